"""Create benchmark: `Database.create_for`, one after the other, as the portal does it.

Target: at least 15 databases a second on PostgreSQL, sustained over 200 creates (the rate over
all of them). The slowest window of 10 consecutive creates is shown beside it. SQLite has no
target: its rate is printed for the record.

Baseline: the same number of `createdb -T <the release's template>` on the same server, one
after the other, so the figure can be read against what PostgreSQL itself does on this disk.

PostgreSQL first: a server is registered in the fleet, so placement puts every database there.
Then it is marked draining (placement skips it) and the same runs on SQLite. One create before
each series, untimed, builds the release's template.

    .venv/bin/python bench/create.py [--count 200] [--engine both|postgresql|sqlite] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from pathlib import Path
from typing import TYPE_CHECKING

from _setup import (
    GIB,
    client_command,
    durability,
    file_creation_ms,
    machine,
    postgres,
    run,
    setup_django,
    verdict,
    workdir,
)

if TYPE_CHECKING:
    from tenantry.accounts.models import User
    from tests.postgres import PostgresServer

TARGET_PER_SECOND = 15.0
WINDOW = 10


def series(user: User, engine: str, count: int, profile: bool) -> list[float]:
    """The duration of each of `count` creates, after an untimed one that warms the template."""
    from tenantry.databases.models import Database

    warm = Database.create_for(user, f"bench-{engine}-warm")
    if warm.engine != engine:
        raise RuntimeError(f"Placement put the database on {warm.engine}, not on {engine}.")
    profiler = cProfile.Profile() if profile else None
    durations: list[float] = []
    misplaced = 0
    for i in range(count):
        if profiler:
            profiler.enable()
        started = time.perf_counter()
        database = Database.create_for(user, f"bench-{engine}-{i}")
        durations.append(time.perf_counter() - started)
        if profiler:
            profiler.disable()
        misplaced += database.engine != engine
    if misplaced:
        print(f"  WRONG: {misplaced} of {count} databases were not placed on {engine}")
    if profiler:
        print(f"  cProfile of the {count} creates, by cumulative time:")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    return durations


def createdb_series(server: PostgresServer, template: str, count: int) -> list[float]:
    """The duration of each of `count` runs of `createdb -T template`, the baseline."""
    durations = []
    for i in range(count):
        command = client_command(server, "createdb", "-T", template, f"baseline_{i}")
        started = time.perf_counter()
        run(command)
        durations.append(time.perf_counter() - started)
    return durations


def report(durations: list[float], target: float | None) -> None:
    total = sum(durations)
    rate = len(durations) / total
    ordered = sorted(durations)
    median = ordered[len(ordered) // 2]
    print(
        f"  {len(durations)} creates in {total:.2f} s: {rate:.1f} databases/s"
        f" (median {median * 1000:.0f} ms, slowest {ordered[-1] * 1000:.0f} ms)"
    )
    if len(durations) >= WINDOW:
        windows = [sum(durations[i : i + WINDOW]) for i in range(len(durations) - WINDOW + 1)]
        slowest = max(windows)
        start = windows.index(slowest)
        print(
            f"  slowest {WINDOW}-create window (creates {start + 1}-{start + WINDOW}):"
            f" {slowest:.2f} s, {WINDOW / slowest:.1f} databases/s"
        )
    if target is not None:
        print(
            f"  ratio to target: {rate / target:.2f} ({rate:.1f} / {target:.0f} databases/s,"
            f" target >= 1.00)  {verdict(rate >= target)}"
        )


def bench_postgresql(pg_dir: Path, user: User, count: int, durable: bool, profile: bool) -> None:
    from tenantry.engines.fleet import server_engine as engine_for_server
    from tenantry.engines.models import Server
    from tenantry.workspace.releases import LATEST

    with postgres(pg_dir, durable) as server:
        print(f"PostgreSQL {server.psql('SHOW server_version')} ({durability(server)})")
        probe = server.base / "probe"
        print(f"  file system: 300 new files in {file_creation_ms(probe):.0f} ms (before)")
        record = Server(name="bench", capacity_bytes=100 * GIB)
        record.url = server.url
        record.save()
        try:
            durations = series(user, "postgresql", count, profile)
            print(f"  file system: 300 new files in {file_creation_ms(probe):.0f} ms (after)")
            report(durations, TARGET_PER_SECOND)
            template = engine_for_server(record).template_name(LATEST)
            baseline = createdb_series(server, template, count)
            print(f"  baseline, createdb -T {template}:")
            report(baseline, TARGET_PER_SECOND)
            ratio = sum(durations) / sum(baseline)
            print(f"  ours / createdb time: {ratio:.2f} (1.00 = as fast as PostgreSQL here)")
        finally:
            # Placement skips a draining server: what follows goes to SQLite.
            record.draining = True
            record.save(update_fields=["draining"])


def bench_sqlite(user: User, count: int, profile: bool) -> None:
    import sqlite3

    print(f"SQLite {sqlite3.sqlite_version}")
    report(series(user, "sqlite", count, profile), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="timed creates (default 200)")
    parser.add_argument("--engine", choices=["both", "postgresql", "sqlite"], default="both")
    parser.add_argument(
        "--durable", action="store_true", help="PostgreSQL with fsync and full_page_writes on"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the timed creates")
    parser.add_argument(
        "--pg-dir",
        type=Path,
        help="where the PostgreSQL cluster goes, e.g. /dev/shm to take the disk out"
        " (default: the run's temporary folder)",
    )
    args = parser.parse_args()

    print(f"Machine at start: {machine()}")
    with workdir() as base:
        setup_django(base / "data")
        from tenantry.accounts.models import User

        user = User.objects.create_user("bench@example.com", "bench password 1234")
        if args.engine in ("both", "postgresql"):
            pg_dir = args.pg_dir or base / "pg"
            bench_postgresql(pg_dir, user, args.count, args.durable, args.profile)
        if args.engine in ("both", "sqlite"):
            bench_sqlite(user, args.count, args.profile)

    print(f"Machine at end: {machine()}")


if __name__ == "__main__":
    main()
