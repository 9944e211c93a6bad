"""Backup benchmark: the download of a ~1 GB database's backup ZIP, with a ~200 MB filestore.

Targets, on a PostgreSQL database of --size-mb (default 1024) with --files-mb (default 200) of
filestore, downloading `GET /api/v1/databases/{name}/download` from the production web server
(`tenantry web`, Granian, one worker) over HTTP on 127.0.0.1, into a file:
- the first byte of the ZIP arrives in under 1 s;
- the whole download takes at most 1.3 times the Odoo method, reproduced with the same tools:
  `pg_dump -Fp` of the same database to a file, then `zip -1 -r` of it and the filestore;
- the peak memory (VmHWM) of the web worker process that serves it stays under 150 MiB.

After an untimed warm-up round (shown in brackets), each contender runs --runs times,
alternating; the best run counts. Dirty pages are flushed (sync, CHECKPOINT) before each run,
untimed.

    .venv/bin/python bench/backup.py [--size-mb 1024] [--files-mb 200] [--runs 2]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from _setup import (
    GIB,
    MIB,
    ROOT,
    client_command,
    durability,
    machine,
    postgres,
    run,
    setup_django,
    size_text,
    verdict,
    workdir,
)
from duplicate import PG_INSERT, ROW_BYTES

if TYPE_CHECKING:
    from tenantry.databases.models import Database
    from tests.postgres import PostgresServer

MAX_FIRST_BYTE = 1.0  # seconds
MAX_RATIO = 1.3
MAX_PEAK = 150 * MIB
NAME = "bench"
CHUNK = 1024 * 1024
STARTUP_SECONDS = 60


@dataclass
class Contender:
    """One way to make the backup: `make` is timed and returns its figures; `check` (after the
    warm-up) and `undo` are not."""

    label: str
    make: Callable[[], dict[str, float]]
    undo: Callable[[], None]
    check: Callable[[], None] | None = None
    runs: list[dict[str, float]] = field(default_factory=list)
    warmup: dict[str, float] = field(default_factory=dict)

    def best(self, figure: str = "total") -> float:
        return min(r[figure] for r in self.runs)


def race(contenders: list[Contender], runs: int, before: Callable[[], None]) -> None:
    """An untimed warm-up round, then `runs` timed rounds, contenders alternating."""
    for number in range(runs + 1):
        for contender in contenders:
            before()
            figures = contender.make()
            if number == 0:
                contender.warmup = figures
                if contender.check is not None:
                    contender.check()
            else:
                contender.runs.append(figures)
            contender.undo()


def times_text(contender: Contender, figure: str = "total") -> str:
    runs = "  ".join(f"{r[figure]:6.2f} s" for r in contender.runs)
    return f"({contender.warmup[figure]:6.2f} s) {runs}   best {contender.best(figure):6.2f} s"


# The data ------------------------------------------------------------------------------------


def fill_database(server: PostgresServer, physical: str, size: int) -> int:
    """Insert contacts (1 KiB of md5 notes each) until the database is `size` bytes; the rows."""
    batch = max(1_000, min(50_000, size // ROW_BYTES // 8))
    rows = 0
    while int(server.psql(f"SELECT pg_database_size('{physical}')")) < size:
        server.psql(PG_INSERT.format(start=rows + 1, stop=rows + batch), db=physical)
        rows += batch
    server.psql("VACUUM ANALYZE; CHECKPOINT", db=physical)
    return rows


def text_file(number: int) -> bytes:
    """1 MiB of CSV-like lines around md5 digests: compresses about 2 to 1, like text documents."""
    lines, size, i = [], 0, 0
    while size < MIB:
        digest = hashlib.md5(f"{number}.{i}".encode(), usedforsecurity=False).hexdigest()
        line = f"{number},{i},contact{i}@example.com,Company {i % 1000},{digest}\n"
        lines.append(line)
        size += len(line)
        i += 1
    return "".join(lines).encode()[:MIB]


def fill_filestore(physical: str, size: int) -> tuple[int, int]:
    """Files of 1 MiB, one in two random bytes (like images and PDFs, which do not compress),
    the other text; the number of files and their total size."""
    from tenantry.engines import filestore

    count = max(1, size // MIB)
    for i in range(count):
        data = os.urandom(MIB) if i % 2 == 0 else text_file(i)
        filestore.store(physical, [data])
    files = [p for p in filestore.root(physical).rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


# The web server ------------------------------------------------------------------------------


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state: the parent


def memory(pid: int, name: str = "VmHWM") -> int:
    """A memory figure of /proc/<pid>/status in bytes: VmHWM is the peak resident set."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    return 0


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def web_workers(web: subprocess.Popen[bytes]) -> list[int]:
    """Granian's worker processes: the children of `tenantry web` spawned by multiprocessing
    (not its resource tracker)."""
    pids = [int(p.name) for p in Path("/proc").glob("[0-9]*")]
    return [pid for pid in pids if parent_of(pid) == web.pid and "spawn_main" in command_line(pid)]


def get(port: int, path: str, key: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.request("GET", path, headers={"Authorization": f"Bearer {key}"})
    return connection.getresponse()


@contextmanager
def web_server(base: Path, port: int, key: str) -> Iterator[subprocess.Popen[bytes]]:
    """`tenantry web` on the bench's data dir (TENANTRY_DATA_DIR is in the environment),
    answering API requests; stopped afterwards."""
    env = {**os.environ, "TENANTRY_PORTAL_URL": f"http://127.0.0.1:{port}"}
    command = [sys.executable, "-m", "tenantry", "web", "--bind", f"127.0.0.1:{port}"]
    log = (base / "web.log").open("wb")
    web = subprocess.Popen(
        [*command, "--workers", "1"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                response = get(port, "/api/v1/me", key)
                response.read()
                if response.status == 200:
                    break
                raise RuntimeError(f"/api/v1/me answered {response.status}")
            except ConnectionRefusedError:
                if web.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "tenantry web did not start:\n" + (base / "web.log").read_text()[-2000:]
                    ) from None
                time.sleep(0.2)
        yield web
    finally:
        web.terminate()
        try:
            web.wait(30)
        except subprocess.TimeoutExpired:
            web.kill()
            web.wait()
        log.close()


def download(port: int, key: str, target: Path) -> dict[str, float]:
    """GET the backup into `target`: seconds to the first byte of the body and to the last."""
    started = time.perf_counter()
    response = get(port, f"/api/v1/databases/{NAME}/download", key)
    if response.status != 200:
        raise RuntimeError(f"The download answered {response.status}: {response.read(500)!r}")
    first = 0.0
    with target.open("wb") as f:
        while chunk := response.read1(CHUNK):
            if not first:
                first = time.perf_counter() - started
            f.write(chunk)
    return {"first": first, "total": time.perf_counter() - started}


def check_zip(path: Path, files: int) -> None:
    """The download is a whole ZIP (every member's CRC), with the dump and every file."""
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
        names = archive.namelist()
    stored = sum(name.startswith("filestore/") for name in names)
    if bad is not None or "manifest.json" not in names or "dump.sql" not in names:
        print(f"  WRONG: the download is not a valid backup (bad member {bad}, {names[:5]})")
    elif stored != files:
        print(f"  WRONG: the download holds {stored} filestore files, not {files}")
    else:
        print(f"  download checked: a valid ZIP, manifest.json, dump.sql and {stored} files")


# The Odoo method -----------------------------------------------------------------------------


def odoo_method(server: PostgresServer, physical: str, folder: Path) -> dict[str, float]:
    """pg_dump to a file, then zip -1 of it and the filestore (`filestore` links to it)."""
    started = time.perf_counter()
    dump = ["-Fp", "--no-owner", "--no-privileges", "-f", str(folder / "dump.sql"), physical]
    run(client_command(server, "pg_dump", *dump))
    dumped = time.perf_counter()
    subprocess.run(
        ["zip", "-1", "-r", "-q", "backup.zip", "dump.sql", "filestore"],
        cwd=folder, check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    done = time.perf_counter()
    return {"pg_dump": dumped - started, "zip": done - dumped, "total": done - started}


# The run -------------------------------------------------------------------------------------


def bench(base: Path, size: int, files_size: int, runs: int, durable: bool) -> None:
    from tenantry.accounts.models import ApiKey, User
    from tenantry.backups import archive
    from tenantry.databases import lifecycle
    from tenantry.engines import filestore
    from tenantry.engines.fleet import engine_for
    from tenantry.engines.models import Server
    from tests.postgres import free_port

    with postgres(base / "pg", durable) as server:
        print(f"PostgreSQL {server.psql('SHOW server_version')} ({durability(server)})")
        record = Server(name="bench", capacity_bytes=100 * GIB)
        record.url = server.url
        record.save()
        user = User.objects.create_user("bench@example.com", "bench password 1234")
        user.developer_mode = True  # API keys work in developer mode only
        user.save(update_fields=["developer_mode"])
        _, key = ApiKey.objects.issue(user, "bench")
        database: Database = lifecycle.create(NAME, by=user)
        physical = database.physical_name

        started = time.perf_counter()
        rows = fill_database(server, physical, size)
        count, stored = fill_filestore(physical, files_size)
        db_size = engine_for(database).size(physical)
        print(
            f"  database: {size_text(db_size)}, {rows:,} contacts; filestore: {count} files,"
            f" {size_text(stored)} (filled in {time.perf_counter() - started:.0f} s)"
        )

        ours_file = base / "download.zip"
        baseline = base / "odoo"
        baseline.mkdir()
        (baseline / "filestore").symlink_to(filestore.root(physical))
        in_process = base / "in-process.zip"
        sizes: dict[str, int] = {}

        def keep_sizes(label: str, *paths: Path) -> Callable[[], None]:
            def undo() -> None:
                for path in paths:
                    sizes[f"{label} {path.name}"] = path.stat().st_size
                    path.unlink()

            return undo

        def write_in_process() -> dict[str, float]:
            started = time.perf_counter()
            with in_process.open("wb") as f:
                for piece in archive.stream(database):
                    f.write(piece)
            return {"total": time.perf_counter() - started}

        port = free_port()
        with web_server(base, port, key) as web:
            workers = web_workers(web)
            idle = {pid: memory(pid) for pid in workers}
            contenders = [
                Contender(
                    "download (HTTP)",
                    lambda: download(port, key, ours_file),
                    keep_sizes("ours", ours_file),
                    lambda: check_zip(ours_file, count),
                ),
                Contender(
                    "pg_dump -Fp + zip -1",
                    lambda: odoo_method(server, physical, baseline),
                    keep_sizes("odoo", baseline / "dump.sql", baseline / "backup.zip"),
                ),
                Contender(
                    "archive.stream to a file, no HTTP",
                    write_in_process,
                    keep_sizes("in-process", in_process),
                ),
            ]

            def before() -> None:
                os.sync()
                server.psql("CHECKPOINT")

            race(contenders, runs, before)
            peaks = {pid: memory(pid) for pid in workers}
            main_peak = memory(web.pid)

        report(contenders, sizes, idle, peaks, main_peak)


def report(
    contenders: list[Contender],
    sizes: dict[str, int],
    idle: dict[int, int],
    peaks: dict[int, int],
    main_peak: int,
) -> None:
    ours, odoo, in_process = contenders
    print(
        f"  ZIP: ours {size_text(sizes['ours download.zip'])},"
        f" Odoo method {size_text(sizes['odoo backup.zip'])}"
        f" (its dump.sql {size_text(sizes['odoo dump.sql'])})"
    )
    first = ours.best("first")
    print(f"  first byte  {times_text(ours, 'first')}")
    print(
        f"  first byte, best {first:.2f} s (target < {MAX_FIRST_BYTE:.0f} s)"
        f"  {verdict(first < MAX_FIRST_BYTE)}"
    )
    print(f"  {ours.label:<34} {times_text(ours)}")
    print(f"  {odoo.label:<34} {times_text(odoo)}")
    best = min(odoo.runs, key=lambda r: r["total"])
    print(f"    its best run: pg_dump {best['pg_dump']:.2f} s, then zip {best['zip']:.2f} s")
    ratio = ours.best() / odoo.best()
    print(
        f"  ratio download / Odoo method: {ratio:.2f} (target <= {MAX_RATIO:.2f})"
        f"  {verdict(ratio <= MAX_RATIO)}"
    )
    print(f"  {in_process.label:<34} {times_text(in_process)}")
    print(
        f"  (for reference: archive.stream alone is {in_process.best() / odoo.best():.2f} times"
        f" the Odoo method; not a target)"
    )
    for pid, peak in peaks.items():
        print(
            f"  Granian worker (pid {pid}, the process that serves the download): peak memory"
            f" (VmHWM) {peak / MIB:.0f} MiB, {idle[pid] / MIB:.0f} MiB before any download"
        )
    if peaks:
        worst = max(peaks.values())
        print(
            f"  peak memory of the serving process {worst / MIB:.0f} MiB"
            f" (target < {MAX_PEAK / MIB:.0f} MiB)  {verdict(worst < MAX_PEAK)}"
        )
    else:
        print("  WRONG: no Granian worker process found under tenantry web")
    print(f"  (tenantry web's main process, which serves nothing: {main_peak / MIB:.0f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="database size (default 1024)")
    parser.add_argument("--files-mb", type=int, default=200, help="filestore size (default 200)")
    parser.add_argument("--runs", type=int, default=2, help="runs of each contender (default 2)")
    parser.add_argument(
        "--durable", action="store_true", help="PostgreSQL with fsync and full_page_writes on"
    )
    args = parser.parse_args()
    if shutil.which("zip") is None:
        sys.exit("The baseline needs zip: install it (Debian: apt-get install zip).")

    print(f"Machine at start: {machine()}")
    with workdir() as base:
        setup_django(base / "data")
        bench(base, args.size_mb * MIB, args.files_mb * MIB, args.runs, args.durable)
    print(f"Machine at end: {machine()}")


if __name__ == "__main__":
    main()
