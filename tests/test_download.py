"""The backup ZIP download, on both engines: streamed, checked by unzip, loadable by psql."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import zipfile
from pathlib import Path

import pytest
from django.test import Client

from tenantry.accounts.models import User
from tenantry.databases import lifecycle
from tenantry.databases.models import Database
from tenantry.engines import filestore
from tenantry.workspace import releases, tenant
from tests.conftest import api, client_for
from tests.postgres import PostgresServer


@pytest.fixture
def shop(engine_kind: str, owner: User) -> Database:
    database = lifecycle.create("shop", by=owner)
    Contact = releases.model(database.release, "Contact")
    with tenant.using(database) as db:
        Contact.objects.using(db).create(name="Ada Lovelace")
    filestore.store(database.physical_name, [b"%PDF invoice"])
    return database


def download(client: Client, path: str) -> zipfile.ZipFile:
    response = client.get(path)
    assert response.status_code == 200, response
    assert response.streaming and response["Content-Type"] == "application/zip"
    assert 'filename="shop_' in response["Content-Disposition"]
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))  # type: ignore[arg-type]


def test_the_zip_has_a_manifest_the_dump_and_the_files(
    shop: Database,
    owner: User,
    tmp_path: Path,
) -> None:
    archive = download(client_for(owner), "/databases/shop/download/")
    manifest = json.loads(archive.read("manifest.json"))
    assert (manifest["database"], manifest["uuid"], manifest["release"]) == (
        "shop",
        str(shop.uuid),
        shop.release,
    )
    assert manifest["engine"] == shop.engine
    sha = hashlib.sha256(b"%PDF invoice").hexdigest()
    assert set(manifest["files"]) == {"dump.sql", f"filestore/{sha[:2]}/{sha}"}
    for name, facts in manifest["files"].items():
        data = archive.read(name)
        assert (len(data), hashlib.sha256(data).hexdigest()) == (facts["size"], facts["sha256"])
    assert b"Ada Lovelace" in archive.read("dump.sql")
    path = tmp_path / "shop.zip"
    raw = client_for(owner).get("/databases/shop/download/")
    path.write_bytes(b"".join(raw.streaming_content))  # type: ignore[arg-type]
    result = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True)
    assert result.returncode == 0 and "No errors detected" in result.stdout, result.stdout


def test_the_postgresql_dump_loads_into_a_vanilla_server(
    shop: Database, owner: User, pg_servers: list[PostgresServer]
) -> None:
    if shop.engine != "postgresql":
        return  # the SQLite dump is checked by the next test
    archive = download(client_for(owner), "/databases/shop/download/")
    vanilla = pg_servers[1]
    vanilla.psql("DROP DATABASE IF EXISTS restored")
    vanilla.psql("CREATE DATABASE restored")
    result = subprocess.run(
        [
            str(vanilla.bin_dir / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            vanilla.url_for("restored"),
        ],
        input=archive.read("dump.sql"),
        capture_output=True,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert vanilla.psql("SELECT name FROM workspace_contact", db="restored") == "Ada Lovelace"
    vanilla.psql("DROP DATABASE restored")


def test_the_sqlite_dump_loads_into_sqlite(shop: Database, owner: User) -> None:
    if shop.engine != "sqlite":
        return  # the PostgreSQL dump is checked by the previous test
    import sqlite3

    archive = download(client_for(owner), "/databases/shop/download/")
    db = sqlite3.connect(":memory:")
    db.executescript(archive.read("dump.sql").decode())
    assert db.execute("SELECT name FROM workspace_contact").fetchall() == [("Ada Lovelace",)]


def test_the_api_and_the_cli_download_too(shop: Database, owner: User, tmp_path: Path) -> None:
    from django.core.management import call_command

    archive = download(api(owner), "/api/v1/databases/shop/download")
    assert "manifest.json" in archive.namelist()
    target = tmp_path / "backup.zip"
    call_command("db", "backup", "shop", "-o", str(target), stdout=io.StringIO())
    assert "dump.sql" in zipfile.ZipFile(target).namelist()
    # Into a folder, as cp does: under the backup's own name.
    folder = tmp_path / "backups"
    folder.mkdir()
    call_command("db", "backup", "shop", "-o", str(folder), stdout=io.StringIO())
    [written] = folder.iterdir()
    assert written.name.startswith("shop_") and written.suffix == ".zip"
    assert "dump.sql" in zipfile.ZipFile(written).namelist()


def test_only_administrators_download(
    shop: Database,
    member: User,
    outsider: User,
) -> None:
    from tenantry.databases.models import Membership

    Membership.objects.create(database=shop, user=member, role="user")
    assert client_for(member).get("/databases/shop/download/").status_code == 403
    assert client_for(outsider).get("/databases/shop/download/").status_code == 404
