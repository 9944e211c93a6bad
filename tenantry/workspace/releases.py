"""The workspace app's releases: each one is a point in its migrations.

One code base serves databases at every release: the models in models.py are the latest
release's, and a database at an older one is reached through the models of that point in
the migrations (Django's historical models), which `model` gives.
"""

from __future__ import annotations

from functools import cache

from django.apps import apps
from django.apps.registry import Apps
from django.db import models
from django.db.migrations.loader import MigrationLoader

RELEASES = {
    "1.0": "0001_initial",
    "1.1": "0002_release_1_1",
    "2.0": "0003_release_2_0",
    "2.1": "0004_release_2_1",
}
LATEST = "2.1"


def model(release: str, name: str) -> type[models.Model]:
    """The workspace model `name` as it is in databases at `release`."""
    return _registry(release).get_model("workspace", name)


@cache
def _registry(release: str) -> Apps:
    if RELEASES[release] == RELEASES[LATEST]:
        return apps
    loader = MigrationLoader(None, ignore_no_migrations=True)
    return loader.project_state(("workspace", RELEASES[release]), at_end=True).apps
