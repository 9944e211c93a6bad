"""Release 2.1, a minor: a company's email domain, to begin with the one most of its
contacts' addresses share."""

from django.db import migrations, models

DOMAIN = {
    "sqlite": "lower(substr(email, instr(email, '@') + 1))",
    "postgresql": "lower(split_part(email, '@', 2))",
}
HAS_AT = {"sqlite": "instr(email, '@') > 0", "postgresql": "position('@' in email) > 0"}


def domains_from_contacts(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "UPDATE workspace_company SET domain = COALESCE(("
            f"SELECT {DOMAIN[vendor]} AS d FROM workspace_contact "
            f"WHERE company_id = workspace_company.id AND {HAS_AT[vendor]} "
            "GROUP BY d ORDER BY count(*) DESC, d LIMIT 1), '')"
        )


class Migration(migrations.Migration):

    dependencies = [
        ('workspace', '0003_release_2_0'),
    ]

    operations = [
        migrations.AddField(
            model_name='company',
            name='domain',
            field=models.CharField(blank=True, max_length=253),
        ),
        migrations.RunPython(domains_from_contacts, migrations.RunPython.noop),
    ]
