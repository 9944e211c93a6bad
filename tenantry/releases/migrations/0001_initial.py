from django.db import migrations, models
from django.utils import timezone


def publish_the_first(apps, schema_editor):
    Release = apps.get_model("releases", "Release")
    for version in ("1.0", "1.1"):
        Release.objects.get_or_create(version=version, defaults={"published_at": timezone.now()})


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Release",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("version", models.CharField(max_length=20, unique=True)),
                ("published_at", models.DateTimeField(blank=True, null=True)),
                ("deprecated", models.BooleanField(default=False)),
            ],
        ),
        migrations.RunPython(publish_the_first, migrations.RunPython.noop),
    ]
