"""Test-only releases of the workspace app, planted after the real ones: 9.0 fails midway
through its data migration; 9.1 (beside 9.0, not after it) waits in its data migration while
a file is there (a test kills the worker then).

In-process tests point MIGRATION_MODULES here and add PLANTED to RELEASES; a worker started
by a test uses tests.planted.settings, whose app adds them.
"""

PLANTED = {"9.0": "0005_planted_failure", "9.1": "0006_planted_slow"}
MIGRATIONS = "tests.planted.workspace_migrations"
