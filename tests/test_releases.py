"""The releases an operator offers: listed, published, deprecated; new databases at the latest
published one; a deprecated release shown in the manager and the API."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.databases import lifecycle
from tenantry.releases.models import Release
from tests.conftest import api, client_for

pytestmark = pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)


def releases(*args: str) -> str:
    out = io.StringIO()
    call_command("releases", *args, stdout=out)
    return out.getvalue()


def test_the_first_releases_are_published_and_listed_with_their_databases(
    engine_kind: str, owner: User
) -> None:
    lifecycle.create("acme", by=owner)
    listing = releases("list").splitlines()
    today = f"{timezone.now():%Y-%m-%d}"
    assert listing == [
        f"1.0\t{today}\tsupported\t0 database(s)",
        f"1.1\t{today}\tsupported\t1 database(s)",
        "2.0\t-\tnot published\t0 database(s)",
        "2.1\t-\tnot published\t0 database(s)",
    ]


def test_new_databases_are_made_at_the_latest_published_release(
    engine_kind: str, owner: User
) -> None:
    Release.objects.filter(version="1.1").update(published_at=None)
    assert lifecycle.create("older", by=owner).release == "1.0"
    assert "1.1\t-\tnot published" in releases("list")
    assert "Published 1.1 on 2026-11-02." in releases("publish", "1.1", "--date", "2026-11-02")
    assert lifecycle.create("newer", by=owner).release == "1.1"


def test_publishing_and_deprecating_refuse_what_cannot_be(engine_kind: str, db: None) -> None:
    with pytest.raises(CommandError, match=r"There is no release 9\.9 in this Tenantry"):
        releases("publish", "9.9")
    with pytest.raises(CommandError, match="is not a date: write it YYYY-MM-DD"):
        releases("publish", "1.1", "--date", "tomorrow")
    with pytest.raises(CommandError, match="1.1 is the latest published release"):
        releases("deprecate", "1.1")
    Release.objects.filter(version="1.0").update(published_at=None)
    with pytest.raises(CommandError, match=r"The release 1\.0 is not published"):
        releases("deprecate", "1.0")


def test_a_deprecated_release_shows_in_the_manager_and_the_api(
    engine_kind: str, owner: User
) -> None:
    Release.objects.filter(version="1.1").update(published_at=None)
    lifecycle.create("acme", by=owner)  # at 1.0
    releases("publish", "1.1")
    assert releases("deprecate", "1.0") == "1.0 is deprecated.\n"
    page = client_for(owner).get("/databases/").content.decode()
    assert '1.0 <span class="badge warn">deprecated</span>' in page
    key = api(owner)
    assert key.get("/api/v1/databases/acme").json()["release_deprecated"] is True
    assert key.get("/api/v1/databases").json()["data"][0]["release_deprecated"] is True
    offered = key.get("/api/v1/releases").json()["data"]
    assert [(r["version"], r["deprecated"], r["latest"]) for r in offered] == [
        ("1.0", True, False),
        ("1.1", False, True),
    ]
    assert "deprecated" in releases("list").splitlines()[0]
