"""The `tenantry` command: Django's manage.py under the project's name.

`tenantry serve`, `web`, `worker`, `accounts`, `apikeys` and every Django command
(`tenantry migrate`, `tenantry check --deploy`, ...) run through here.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tenantry.settings")
    if sys.argv[1:2] == ["serve"]:
        _portal_url_from_bind(sys.argv[2:])
    from django.core.management import execute_from_command_line

    execute_from_command_line(["tenantry", *sys.argv[1:]])


def _portal_url_from_bind(args: list[str]) -> None:
    """`tenantry serve --bind 127.0.0.1:9000` with no TENANTRY_PORTAL_URL: the portal is where
    it listens, so that mailed links and databases' addresses name the right port. Set before
    the settings are read, so that the web processes read it too."""
    if "TENANTRY_PORTAL_URL" in os.environ:
        return
    for i, arg in enumerate(args):
        value = arg.removeprefix("--bind=") if arg.startswith("--bind=") else None
        if arg == "--bind" and i + 1 < len(args):
            value = args[i + 1]
        host, _, port = (value or "").rpartition(":")
        if host and port.isdigit():
            host = host.strip("[]")
            host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 (a name for links)
            host = f"[{host}]" if ":" in host else host
            os.environ["TENANTRY_PORTAL_URL"] = f"http://{host}:{port}"


if __name__ == "__main__":
    main()
