"""Kill -9 the process running an upgrade in the middle of its migrations, on both engines:
the database is found at its old release with its data as it was, and the next worker does
the upgrade whole. Real processes: `tenantry db upgrade` runs it, `tenantry worker` resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import PASSWORD
from tests.helpers import TENANTRY, control_db, env_for
from tests.postgres import PostgresServer

pytestmark = pytest.mark.slow

STEP = "Running 0006_planted_slow"


def planted_env(data_dir: Path, marker: Path) -> dict[str, str]:
    """The planted releases (tests/planted): 9.1 waits in its migration while `marker` is."""
    return env_for(data_dir) | {
        "DJANGO_SETTINGS_MODULE": "tests.planted.settings",
        "TENANTRY_TEST_SLOW": str(marker),
        "TENANTRY_OPERATION_STALE_SECONDS": "2",
    }


def run(env: dict[str, str], *args: str, stdin: str = "") -> str:
    result = subprocess.run(
        [TENANTRY, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


FACTS = """
import json
from tenantry.databases.models import Database
from tenantry.operations.models import Operation
from tenantry.releases.models import Upgrade
from tenantry.backups.models import Backup
from tenantry.workspace import tenant
from tenantry.workspace.releases import model
from tenantry.releases.upgrade import release_of
d = Database.objects.get(name="acme")
with tenant.using(d) as db:
    names = sorted(model(d.release, "Contact").objects.using(db).values_list("name", flat=True))
print(json.dumps({
    "record": d.release, "tenant": release_of(d), "contacts": names,
    "operations": list(Operation.objects.values_list("kind", "state")),
    "reports": list(Upgrade.objects.values_list("state", flat=True)),
    "backups": list(Backup.objects.filter(kind="before_upgrade").values_list("state", flat=True)),
}))
"""


def step(data_dir: Path) -> str:
    with control_db(data_dir) as db:
        row = db.execute("SELECT step FROM operations_operation WHERE kind = 'upgrade'").fetchone()
    return row[0] if row else ""


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_an_upgrade_killed_midway_is_rolled_back_then_done_by_the_next_worker(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    data_dir, marker = tmp_path / "data", tmp_path / "slow"
    env = planted_env(data_dir, marker)
    run(env_for(data_dir), "migrate", "-v0")  # the planted branch is no control-plane matter
    run(env, "accounts", "create", "op@example.com", "--password-stdin", "--verified",
        stdin=PASSWORD)  # fmt: skip
    if engine == "postgresql":
        pg: PostgresServer = request.getfixturevalue("pg_server")
        run(env, "servers", "add", pg.url, "--name", f"crash-{tmp_path.name}"[:60])
    run(env, "db", "create", "acme", "--owner", "op@example.com")
    run(env, "shell", "-v0", "-c", """
from tenantry.databases.models import Database
from tenantry.workspace import tenant
from tenantry.workspace.releases import model
d = Database.objects.get(name="acme")
contact = model(d.release, "Contact")
with tenant.using(d) as db:
    contact.objects.using(db).bulk_create(contact(name=f"c{i}", company="Acme") for i in range(50))
""")  # fmt: skip
    for version in ("2.0", "2.1", "9.1"):
        run(env, "releases", "publish", version)
    before = json.loads(run(env, "shell", "-v0", "-c", FACTS))
    assert (before["record"], before["tenant"]) == ("1.1", "1.1")

    marker.touch()
    upgrading = subprocess.Popen(
        [TENANTRY, "db", "upgrade", "acme", "--release", "9.1"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while step(data_dir) != STEP:
        assert time.monotonic() < deadline and upgrading.poll() is None, step(data_dir)
        time.sleep(0.02)
    os.kill(upgrading.pid, signal.SIGKILL)  # midway: 2.0's and 2.1's migrations are done
    upgrading.wait()

    killed = json.loads(run(env, "shell", "-v0", "-c", FACTS))
    assert (killed["record"], killed["tenant"]) == ("1.1", "1.1")
    assert killed["contacts"] == before["contacts"]  # 9.1's change to them rolled back too
    assert killed["operations"] == [["upgrade", "running"]]

    marker.unlink()
    worker = subprocess.Popen(
        [TENANTRY, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while (done := json.loads(run(env, "shell", "-v0", "-c", FACTS)))["operations"] != [
            ["upgrade", "done"]
        ]:
            assert time.monotonic() < deadline, done
            time.sleep(0.5)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
    done = json.loads(run(env, "shell", "-v0", "-c", FACTS))  # all read after the end
    assert (done["record"], done["tenant"]) == ("9.1", "9.1")
    assert done["contacts"] == ["changed by 9.1"] * 50
    assert done["reports"] == ["succeeded"]
    assert done["backups"] == ["ready"]  # taken once, before the kill
