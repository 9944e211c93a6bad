"""The project's settings with the planted releases (for a worker a test starts)."""

from tenantry.settings import *  # noqa: F403
from tests.planted import MIGRATIONS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.planted"]  # noqa: F405
MIGRATION_MODULES = {"workspace": MIGRATIONS}
