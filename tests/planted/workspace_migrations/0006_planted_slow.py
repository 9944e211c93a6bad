"""Changes every contact, then waits while the file TENANTRY_TEST_SLOW names exists (a test
kills the worker meanwhile)."""

import os
import time
from pathlib import Path

from django.db import migrations


def change_then_wait(apps, schema_editor):
    contact = apps.get_model("workspace", "Contact")
    contact.objects.using(schema_editor.connection.alias).update(name="changed by 9.1")
    marker = Path(os.environ.get("TENANTRY_TEST_SLOW", "/nonexistent"))
    deadline = time.monotonic() + 120
    while marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


class Migration(migrations.Migration):
    dependencies = [("workspace", "0004_release_2_1")]  # beside 9.0, not after it

    operations = [migrations.RunPython(change_then_wait, migrations.RunPython.noop)]
