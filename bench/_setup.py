"""What the benchmarks share: a fresh control plane, a throwaway PostgreSQL server, verdicts.

Run the scripts from the repository root, e.g. `.venv/bin/python bench/create.py`. This module
puts the repository root on sys.path, so `tenantry` and `tests.postgres` import from there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from tests.postgres import PostgresServer

MIB = 1024**2
GIB = 1024**3

# tests/postgres.py turns durability off (fsync, full_page_writes, synchronous_commit): fine for
# tests, flattering for timings. --durable turns it back on (all three can change on a reload).
DURABLE = {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on"}


@contextmanager
def workdir() -> Iterator[Path]:
    """A fresh temporary folder for everything a run makes, removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="tenantry-bench-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def setup_django(data_dir: Path, control_url: str | None = None) -> None:
    """Django on a fresh data dir (settings read it at import), control plane migrated: the
    SQLite one in the data dir, or a fresh PostgreSQL database at `control_url`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["TENANTRY_DATA_DIR"] = str(data_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "tenantry.settings"
    # A control plane elsewhere would not be fresh: the one given, else SQLite in the data dir.
    os.environ.pop("TENANTRY_DATABASE_URL", None)
    if control_url:
        os.environ["TENANTRY_DATABASE_URL"] = control_url

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


@contextmanager
def postgres(parent: Path, durable: bool = False) -> Iterator[PostgresServer]:
    """A running throwaway PostgreSQL server in a new folder under `parent`, removed afterwards."""
    from tests.postgres import PostgresServer

    parent.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="tenantry-bench-pg-", dir=parent))
    server = PostgresServer(base)
    try:
        server.start()
        if durable:
            settings = "".join(f"ALTER SYSTEM SET {k} = '{v}';\n" for k, v in DURABLE.items())
            server.psql(settings + "SELECT pg_reload_conf();")
        yield server
    finally:
        from django.db import connections

        connections.close_all()
        try:
            server.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)


def durability(server: PostgresServer) -> str:
    """The server's durability settings, for the report."""
    names = ", ".join(f"'{name}'" for name in DURABLE)
    query = f"SELECT name || '=' || setting FROM pg_settings WHERE name IN ({names})"  # noqa: S608
    rows = server.psql(query)
    return ", ".join(sorted(rows.split()))


def client_command(server: PostgresServer, program: str, *args: str) -> list[str]:
    """A PostgreSQL client program (createdb, psql...) of the server's version, as postgres."""
    where = ["-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres"]
    return [str(server.bin_dir / program), *where, *args]


def run(command: list[str]) -> None:
    """Run `command`; raise with its error output if it fails."""
    result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")


def machine() -> str:
    """CPUs and load: other work on the machine skews every figure, so each report says it."""
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {one:.2f} (1 min), {five:.2f} (5 min)"


def file_creation_ms(parent: Path, count: int = 300) -> float:
    """Milliseconds to create `count` small files under `parent` (a PostgreSQL database is
    about 300 files). Kept until the run's folders go: deleting them now would slow what
    follows (ext4 without a journal skips recently freed inodes when it allocates)."""
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="probe-", dir=parent))
    data = b"x" * 8192
    started = time.perf_counter()
    for i in range(count):
        (folder / str(i)).write_bytes(data)
    return (time.perf_counter() - started) * 1000


def wait_for_quiet_disk(parent: Path, quiet_ms: float = 30, most_seconds: float = 180) -> float:
    """Wait until 300 new files take under `quiet_ms` (the file system is done with recent
    deletions, see README), at most `most_seconds`; the last figure."""
    deadline = time.monotonic() + most_seconds
    while (ms := file_creation_ms(parent)) >= quiet_ms and time.monotonic() < deadline:
        time.sleep(5)
    return ms


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def size_text(size: int) -> str:
    return f"{size / GIB:.2f} GiB" if size >= GIB else f"{size / MIB:.0f} MiB"
