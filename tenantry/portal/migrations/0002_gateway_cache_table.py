"""The gateway's own cache table, apart from the security state's (see settings.CACHES)."""

from django.core.management import call_command
from django.db import migrations


def create_cache_tables(apps, schema_editor):
    # By name: whether the caches are in Redis today or not, the tables are there the day they
    # come back to the control database.
    call_command(
        "createcachetable",
        "tenantry_cache",
        "tenantry_gateway_cache",
        database=schema_editor.connection.alias,
        verbosity=0,
    )


class Migration(migrations.Migration):
    dependencies = [("portal", "0001_cache_table")]

    operations = [migrations.RunPython(create_cache_tables, migrations.RunPython.noop)]
