"""Kill the worker (kill -9) in the middle of a duplicate and of a delete: after a restart the
operation is finished or cleanly undone, and nothing is left half-made."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSWORD
from tests.helpers import TENANTRY, control_db, copy_data_dir, env_for, tenantry
from tests.postgres import PostgresServer

pytestmark = pytest.mark.slow

# A filestore of many files makes the file-copy and file-removal steps last long enough to
# be interrupted at a known point.
FILES = 6000


def shell(data_dir: Path, code: str) -> str:
    result = tenantry(data_dir, "shell", "-v0", "-c", code)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def state(data_dir: Path) -> dict:  # type: ignore[type-arg]
    """Everything that exists, in the records and on the engines."""
    code = """
import json, os
from tenantry.databases import lifecycle
from tenantry.databases.models import Database
from tenantry.engines.fleet import engine_for
from tenantry.engines import filestore
from tenantry.operations.models import Operation
out = {"operations": list(Operation.objects.values("kind", "state", "progress", "error")),
       "records": {}, "orphans": []}
for d in Database.objects.all():
    out["records"][d.name or d.physical_name] = {
        "status": d.status, "exists": engine_for(d).exists(d.physical_name),
        "files": filestore.root(d.physical_name).exists()}
known = set(Database.objects.values_list("physical_name", flat=True))
def listing(folder):
    path = os.path.join(os.environ["TENANTRY_DATA_DIR"], folder)
    return os.listdir(path) if os.path.exists(path) else []
tenants = [f.split(".")[0] for f in listing("tenants") if f.startswith("tn_")]
out["orphans"] += [f for f in tenants if f not in known]
out["orphans"] += ["filestore/" + f for f in listing("filestore") if f not in known]
from tenantry.engines.models import Server
from tenantry.engines.fleet import server_engine
for s in Server.objects.all():
    names = server_engine(s).sizes()
    out["orphans"] += [n for n in names if n.startswith("tn_") and n not in known]
from tenantry.backups.models import Backup
from tenantry.backups.store import storage
stored = set(Backup.objects.values_list("path", flat=True))
out["backups"] = list(Backup.objects.values("kind", "state"))
folder = os.path.join(os.environ["TENANTRY_DATA_DIR"], "backups")
for where, _, files in os.walk(folder):
    for f in files:
        path = os.path.relpath(os.path.join(where, f), folder)
        if path not in stored:
            out["orphans"].append("backups/" + path)
for s in Server.objects.all():
    with server_engine(s).admin() as db:
        roles = db.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'tenantry_load_%'")
        out["orphans"] += [r[0] for r in roles]
print(json.dumps(out))
"""
    return json.loads(shell(data_dir, code))  # type: ignore[no-any-return]


def start_worker(data_dir: Path) -> subprocess.Popen[bytes]:
    env = env_for(data_dir) | {"TENANTRY_OPERATION_STALE_SECONDS": "2"}
    return subprocess.Popen(
        [TENANTRY, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def wait_for(data_dir: Path, condition: Callable[[str, int], bool], timeout: float = 180) -> None:
    """Poll the control database directly: fast enough to catch a step as it runs."""
    deadline = time.monotonic() + timeout
    with control_db(data_dir) as db:
        while time.monotonic() < deadline:
            row = db.execute("SELECT state, progress FROM operations_operation").fetchone()
            if row and condition(*row):
                return
            time.sleep(0.002)
    raise AssertionError(f"timed out; the operation is {row}")


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with its tables and an account, made once: each test starts from a copy."""
    data_dir = tmp_path_factory.mktemp("migrated") / "data"
    assert tenantry(data_dir, "migrate", "-v0").returncode == 0
    result = tenantry(data_dir, "accounts", "create", "op@example.com", "--password-stdin",
                      "--verified", stdin=PASSWORD)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return data_dir


@pytest.fixture(params=["sqlite", "postgresql"])
def setup(request: pytest.FixtureRequest, migrated: Path, tmp_path: Path) -> Iterator[Path]:
    """A data dir with an account and a database `acme` holding data and many files."""
    data_dir = tmp_path / "data"
    copy_data_dir(migrated, data_dir)
    if request.param == "postgresql":
        pg: PostgresServer = request.getfixturevalue("pg_server")
        assert (
            tenantry(
                data_dir, "servers", "add", pg.url, "--name", f"crash-{tmp_path.name}"[:60]
            ).returncode
            == 0
        )
    result = tenantry(data_dir, "db", "create", "acme", "--owner", "op@example.com")
    assert result.returncode == 0, result.stderr
    shell(
        data_dir,
        f"""
from tenantry.databases.models import Database
from tenantry.engines import filestore
from tenantry.workspace import releases, tenant
d = Database.objects.get(name="acme")
Contact = releases.model(d.release, "Contact")
with tenant.using(d) as db:
    Contact.objects.using(db).bulk_create(Contact(name=f"c{{i}}") for i in range(500))
for i in range({FILES}):
    filestore.store(d.physical_name, [f"file {{i}}".encode()])
""",
    )
    yield data_dir
    # The PostgreSQL server is shared by the whole session: leave it as it was, without what
    # a failed test left (its orphans), which the tests after it would count as theirs.
    shell(
        data_dir,
        """
from tenantry.databases import lifecycle
from tenantry.databases.models import Database
from tenantry.engines.fleet import server_engine
from tenantry.engines.models import Server
for d in Database.objects.all():
    lifecycle.drop_storage(d)
for s in Server.objects.all():
    engine = server_engine(s)
    for name in engine.sizes():
        if name.startswith("tn_"):
            engine.drop(name)
""",
    )


def kill_and_restart(data_dir: Path, worker: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    time.sleep(2.5)  # its operation goes quiet: the next worker takes it over
    return start_worker(data_dir)


def interrupt_at(data_dir: Path, progress: int) -> None:
    """Run a worker, kill -9 it when the operation reaches `progress`, start another one,
    and wait for the operation to end."""
    worker = start_worker(data_dir)
    try:
        wait_for(data_dir, lambda state, at: at == progress)
        worker = kill_and_restart(data_dir, worker)
        wait_for(data_dir, lambda state, at: state in ("done", "failed"))
    finally:
        worker.kill()
        worker.wait()


def test_a_duplicate_killed_midway_is_finished_after_restart(setup: Path) -> None:
    data_dir = setup
    shell(
        data_dir,
        """
from tenantry.databases.lifecycle import start_duplicate
from tenantry.databases.models import Database
start_duplicate(Database.objects.get(name="acme"), "acme-copy", by=None)
""",
    )
    interrupt_at(data_dir, 60)  # copying the files
    result = state(data_dir)
    assert result["operations"][0]["state"] == "done", result
    assert result["records"]["acme-copy"] == {"status": "active", "exists": True, "files": True}
    assert result["orphans"] == []
    count = shell(
        data_dir,
        """
from tenantry.databases.models import Database
from tenantry.engines import filestore
from tenantry.workspace import releases, tenant
d = Database.objects.get(name="acme-copy")
with tenant.using(d) as db:
    contacts = releases.model(d.release, "Contact").objects.using(db).count()
files = [p for p in filestore.root(d.physical_name).rglob("*") if p.is_file()]
print(contacts, len(files))
""",
    )
    assert count == f"500 {FILES}"


def test_a_delete_killed_midway_is_finished_after_restart(setup: Path) -> None:
    data_dir = setup
    shell(
        data_dir,
        """
from tenantry.databases.lifecycle import start_delete
from tenantry.databases.models import Database
start_delete(Database.objects.get(name="acme"), by=None)
""",
    )
    interrupt_at(data_dir, 10)  # dropping the database and its files
    result = state(data_dir)
    assert result["operations"][0]["state"] == "done", result
    assert result["records"] == {}
    assert result["orphans"] == []


def test_a_restore_into_a_new_database_killed_midway_is_finished_after_restart(
    setup: Path,
) -> None:
    data_dir = setup
    shell(
        data_dir,
        """
from tenantry.backups import restore, store
from tenantry.databases.models import Database
from tenantry.accounts.models import User
backup = store.make(Database.objects.get(name="acme"), "daily")
restore.start(backup, "acme-restored", by=User.objects.get())
""",
    )
    interrupt_at(data_dir, 75)  # loading the files
    result = state(data_dir)
    assert result["operations"][0]["state"] == "done", result
    assert result["records"]["acme-restored"] == {"status": "active", "exists": True, "files": True}
    assert result["orphans"] == []
    assert result["backups"] == [{"kind": "daily", "state": "ready"}]
    count = shell(
        data_dir,
        """
from tenantry.databases.models import Database
from tenantry.engines import filestore
from tenantry.workspace import releases, tenant
d = Database.objects.get(name="acme-restored")
with tenant.using(d) as db:
    contacts = releases.model(d.release, "Contact").objects.using(db).count()
files = [p for p in filestore.root(d.physical_name).rglob("*") if p.is_file()]
print(contacts, len(files))
""",
    )
    assert count == f"500 {FILES}"


def test_a_restore_over_a_database_killed_while_backing_it_up_is_finished_after_restart(
    setup: Path,
) -> None:
    data_dir = setup
    shell(
        data_dir,
        """
from tenantry.backups import restore, store
from tenantry.databases.models import Database
from tenantry.workspace import releases, tenant
d = Database.objects.get(name="acme")
backup = store.make(d, "daily")
with tenant.using(d) as db:
    releases.model(d.release, "Contact").objects.using(db).create(name="after the backup")
restore.start(backup, d, by=None)
""",
    )
    interrupt_at(data_dir, 20)  # the automatic backup of acme
    result = state(data_dir)
    assert result["operations"][0]["state"] == "done", result
    assert result["records"] == {"acme": {"status": "active", "exists": True, "files": True}}
    assert result["orphans"] == []
    kinds = sorted((b["kind"], b["state"]) for b in result["backups"])
    assert kinds == [("before_restore", "ready"), ("daily", "ready")]
    count = shell(
        data_dir,
        """
from tenantry.databases.models import Database
from tenantry.workspace import releases, tenant
d = Database.objects.get(name="acme")
with tenant.using(d) as db:
    print(releases.model(d.release, "Contact").objects.using(db).count())
""",
    )
    assert count == "500"
