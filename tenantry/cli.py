"""The `tenantry` command: Django's manage.py under the project's name.

`tenantry serve`, `web`, `worker`, `accounts`, `apikeys` and every Django command
(`tenantry migrate`, `tenantry check --deploy`, ...) run through here.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tenantry.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["tenantry", *sys.argv[1:]])


if __name__ == "__main__":
    main()
