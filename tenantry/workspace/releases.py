"""The workspace app's releases: each one is a point in its migrations."""

from __future__ import annotations

RELEASES = {
    "1.0": "0001_initial",
    "1.1": "0002_release_1_1",
}
LATEST = "1.1"
