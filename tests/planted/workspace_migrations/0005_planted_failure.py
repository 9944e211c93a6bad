"""Changes the schema and every contact, then fails: all of it must be rolled back."""

from django.db import migrations, models


def change_then_fail(apps, schema_editor):
    contact = apps.get_model("workspace", "Contact")
    contact.objects.using(schema_editor.connection.alias).update(name="changed by 9.0")
    raise RuntimeError("the planted release fails here")


class Migration(migrations.Migration):
    dependencies = [("workspace", "0004_release_2_1")]

    operations = [
        migrations.AddField("contact", "planted", models.CharField(max_length=10, default="x")),
        migrations.RunPython(change_then_fail, migrations.RunPython.noop),
    ]
