"""Create benchmark: `lifecycle.create`, as the portal and the API call it.

Target: at least 15 databases a second on PostgreSQL, sustained over 200 creates (the rate over
all of them). The slowest window of 10 consecutive creates is shown beside it. SQLite has no
target: its rate is printed for the record.

Creates come from a few clients at once (`--clients`, default 1 and 4), as requests reach the
web server, which serves 16 at a time (2 workers of 8 threads). Each client is a thread calling
`lifecycle.create`, what a request's thread does.

Baseline: the same number of `createdb -T <the release's template>` on the same server, from
as many clients at once, so the figure can be read against what PostgreSQL itself does here.
The two take turns, 20 creates each, so that both meet the disk in the same state; each rate
counts only its own turns.

PostgreSQL first: a server is registered in the fleet, so placement puts every database there.
Then it is marked draining (placement skips it) and the same runs on SQLite. One create before
each series, untimed, builds the release's template.

    .venv/bin/python bench/create.py [--count 200] [--clients 1,4]
        [--engine both|postgresql|sqlite] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    wait_for_quiet_disk,
    workdir,
)

if TYPE_CHECKING:
    from tenantry.accounts.models import User

TARGET_PER_SECOND = 15.0
WINDOW = 10
# Ours and the baseline take turns, this many creates each.
BLOCK = 20


class Series:
    """What a series of creates took: each create's duration, and when each ended, counted in
    the time spent in the series' own blocks."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self.ends: list[float] = []
        self.elapsed = 0.0
        self.lock = threading.Lock()

    def run(self, numbers: range, clients: int, create: Callable[[int], Any]) -> list[Any]:
        """A block: `create(i)` for each number, from `clients` threads at once; the results."""
        started = time.perf_counter()

        def one(i: int) -> Any:
            from django.db import connections

            try:
                began = time.perf_counter()
                result = create(i)
                ended = time.perf_counter()
                with self.lock:
                    self.durations.append(ended - began)
                    self.ends.append(self.elapsed + ended - started)
                return result
            finally:
                if clients > 1:
                    connections.close_all()  # a thread's own connections

        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(one, numbers))
        self.elapsed += time.perf_counter() - started
        return results


def creates(user: User, engine: str, clients: int) -> Callable[[int], Any]:
    """What a timed create does, after an untimed one that warms the release's template."""
    from tenantry.databases import lifecycle

    prefix = f"bench-{engine}-{clients}c"
    warm = lifecycle.create(f"{prefix}-warm", by=user)
    if warm.engine != engine:
        raise RuntimeError(f"Placement put the database on {warm.engine}, not on {engine}.")
    return lambda i: lifecycle.create(f"{prefix}-{i}", by=user)


def check_placement(databases: list[Any], engine: str) -> None:
    misplaced = sum(database.engine != engine for database in databases)
    if misplaced:
        print(f"  WRONG: {misplaced} of {len(databases)} databases were not placed on {engine}")


def print_profile(profiler: cProfile.Profile | None) -> None:
    if profiler:
        print("  cProfile of the timed creates, by cumulative time:")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def report(timed: Series, target: float | None) -> float:
    """Print the series' figures; its rate in creates a second."""
    count = len(timed.durations)
    ends = sorted(timed.ends)
    rate = count / ends[-1]
    ordered = sorted(timed.durations)
    median = ordered[count // 2]
    print(
        f"  {count} creates in {ends[-1]:.2f} s: {rate:.1f} databases/s"
        f" (each: median {median * 1000:.0f} ms, slowest {ordered[-1] * 1000:.0f} ms)"
    )
    if count >= WINDOW:
        # Window k: from the end of create k-1 (or the start) to the end of create k+WINDOW-1.
        since = [0.0, *ends]
        windows = [since[k + WINDOW] - since[k] for k in range(count - WINDOW + 1)]
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
    return rate


def bench_postgresql(
    pg_dir: Path, user: User, count: int, clients: list[int], durable: bool, profile: bool
) -> None:
    from tenantry.engines.fleet import server_engine as engine_for_server
    from tenantry.engines.models import Server
    from tenantry.releases.models import latest

    with postgres(pg_dir, durable) as server:
        print(f"PostgreSQL {server.psql('SHOW server_version')} ({durability(server)})")
        probe = server.base / "probe"
        print(f"  file system: 300 new files in {file_creation_ms(probe):.0f} ms (at start)")
        # Files deleted in the last minutes (a previous run's clusters) slow file creation.
        print(f"  file system: 300 new files in {wait_for_quiet_disk(probe):.0f} ms (when quiet)")
        record = Server(name="bench", capacity_bytes=100 * GIB)
        record.url = server.url
        record.save()
        try:
            template = engine_for_server(record).template_name(latest())
            for n in clients:
                create = creates(user, "postgresql", n)

                def createdb(i: int, n: int = n) -> None:
                    run(client_command(server, "createdb", "-T", template, f"baseline_{n}c_{i}"))

                # In turns, a block each, so that both meet the disk in the same state.
                ours, baseline, databases = Series(), Series(), []
                profiler = cProfile.Profile() if profile and n == 1 else None
                for first in range(0, count, BLOCK):
                    block = range(first, min(first + BLOCK, count))
                    if profiler:
                        profiler.enable()
                    databases += ours.run(block, n, create)
                    if profiler:
                        profiler.disable()
                    baseline.run(block, n, createdb)
                check_placement(databases, "postgresql")
                print_profile(profiler)
                print(f" {count} creates from {n} client{'s' if n > 1 else ''} at once:")
                rate = report(ours, TARGET_PER_SECOND)
                print(f"  baseline, createdb -T {template}, from {n} at once:")
                baseline_rate = report(baseline, None)
                print(f"  ours / createdb rate: {rate / baseline_rate:.2f} (1.00 = as fast)")
            print(f"  file system: 300 new files in {file_creation_ms(probe):.0f} ms (after)")
        finally:
            # Placement skips a draining server: what follows goes to SQLite.
            record.draining = True
            record.save(update_fields=["draining"])


def bench_sqlite(user: User, count: int, clients: list[int], profile: bool) -> None:
    import sqlite3

    print(f"SQLite {sqlite3.sqlite_version}")
    for n in clients:
        create = creates(user, "sqlite", n)
        profiler = cProfile.Profile() if profile and n == 1 else None
        if profiler:
            profiler.enable()
        timed = Series()
        check_placement(timed.run(range(count), n, create), "sqlite")
        if profiler:
            profiler.disable()
        print_profile(profiler)
        print(f" {count} creates from {n} client{'s' if n > 1 else ''} at once:")
        report(timed, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="timed creates (default 200)")
    parser.add_argument(
        "--clients",
        type=lambda value: [int(n) for n in value.split(",")],
        default=[1, 4],
        help="how many create at once, one series each (default 1,4)",
    )
    parser.add_argument("--engine", choices=["both", "postgresql", "sqlite"], default="both")
    parser.add_argument(
        "--durable", action="store_true", help="PostgreSQL with fsync and full_page_writes on"
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the timed creates of one client"
    )
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
            bench_postgresql(pg_dir, user, args.count, args.clients, args.durable, args.profile)
        if args.engine in ("both", "sqlite"):
            bench_sqlite(user, args.count, args.clients, args.profile)

    print(f"Machine at end: {machine()}")


if __name__ == "__main__":
    main()
