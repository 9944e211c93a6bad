"""The project's settings, with the data dir in a fresh temporary folder for each run."""

import os
import tempfile

os.environ.setdefault("TENANTRY_DATA_DIR", tempfile.mkdtemp(prefix="tenantry-tests-"))

from tenantry.settings import *  # noqa: E402, F403

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
