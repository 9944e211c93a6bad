"""The project's settings, with the data dir in a fresh temporary folder for each run.

The control plane (Django's `default` database) is SQLite, the embedded default, or with
TENANTRY_TEST_CONTROL=postgresql a real PostgreSQL server, as in production, that the suite
starts for itself (tests/postgres.py).
"""

import os
import tempfile

os.environ.setdefault("TENANTRY_DATA_DIR", tempfile.mkdtemp(prefix="tenantry-tests-"))
CONTROL = os.environ.get("TENANTRY_TEST_CONTROL", "sqlite")

if CONTROL == "postgresql":
    # The server starts here, when pytest-django first reads the settings: before any conftest,
    # any connection and the creation of the test database, so that the whole process sees one
    # control plane from the start; it stops at exit, after pytest-django has dropped the test
    # database. It is a server of its own, not one of the `pg_servers` fixture's, which tests
    # stop, fill and drain. The URL goes through the variable production sets, so that the
    # control plane is configured as there, and is taken out again at once: the commands that
    # tests start get a control database of their own (tests/helpers.py env_for).
    from tests.postgres import start_control

    os.environ["TENANTRY_DATABASE_URL"] = start_control().url_for("tenantry")
elif CONTROL != "sqlite":
    raise ValueError(f"TENANTRY_TEST_CONTROL must be sqlite or postgresql, not {CONTROL!r}")

from tenantry.settings import *  # noqa: E402, F403

if CONTROL == "postgresql":
    del os.environ["TENANTRY_DATABASE_URL"]
else:
    # A file, not shared memory: the live server and worker threads of the browser tests then
    # wait on each other's locks (busy timeout) instead of failing with "table is locked".
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-control.sqlite3")}  # noqa: F405

# Hashing is slow on purpose; the suite hashes thousands of passwords. Tests about hashing use
# the project's own list (tenantry.settings.PASSWORD_HASHERS) through override_settings.
PROJECT_PASSWORD_HASHERS = PASSWORD_HASHERS  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Django's test client asks for "testserver" (the test runner allows it in ALLOWED_HOSTS):
# it is the portal's, as 127.0.0.1 is.
PORTAL_HOSTS = [*PORTAL_HOSTS, "testserver"]  # noqa: F405
