"""Release 2.0, a major: a contact's free-text company becomes a row of a companies table,
one per distinct name, linked from its contacts; the 1.x text field is gone."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


def companies_from_names(apps, schema_editor):
    # In SQL, not row by row: a database may hold millions of contacts.
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO workspace_company (name, created_at) "
            "SELECT DISTINCT TRIM(company_name), CURRENT_TIMESTAMP FROM workspace_contact "
            "WHERE TRIM(company_name) <> ''"
        )
        cursor.execute(
            "UPDATE workspace_contact SET company_id = (SELECT c.id FROM workspace_company c "
            "WHERE c.name = TRIM(workspace_contact.company_name)) "
            "WHERE TRIM(company_name) <> ''"
        )


class Migration(migrations.Migration):

    dependencies = [
        ('workspace', '0002_release_1_1'),
    ]

    operations = [
        migrations.CreateModel(
            name='Company',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=200, unique=True)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                'db_table': 'workspace_company',
                'ordering': ['name', 'id'],
            },
        ),
        migrations.RenameField(
            model_name='contact',
            old_name='company',
            new_name='company_name',
        ),
        migrations.AddField(
            model_name='contact',
            name='company',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='contacts', to='workspace.company'),
        ),
        migrations.RunPython(companies_from_names, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name='contact',
            name='company_name',
        ),
    ]
