"""Sweep benchmark: the periodic sweep over many real databases, in the production shape (a
PostgreSQL control plane, `tenantry worker` processes).

Targets:
- a pass with nothing due takes under **50 ms** at 10,000 SQLite and 300 PostgreSQL databases
  (the pass finds per-database work by its due time: operations.due), and its time and peak
  memory do not grow with the number of databases (measured at a tenth of them, then all);
- a day's first pass is spread over the day: the daily backups of all databases fall due by
  database, not in the same minute (the busiest minute is printed);
- the due work's throughput grows with the number of workers: the scheduled jobs of
  `--due` databases, due at once, run by 1, 2 and 4 `tenantry worker` processes (the ratio to
  one worker is printed; this machine's cores bound it).

What is made: `--sqlite` databases (default 10,000) and `--postgresql` ones (default 300) with
`lifecycle.create`, as the portal makes them (about 73 KB each on SQLite), on a control plane in
a throwaway PostgreSQL server, and tenant databases on a second one. Then every database's due
work is done once (its jobs run, its first backup made), so that the passes measured are the
steady state: nothing due but what the clock brings.

    .venv/bin/python bench/sweep.py [--sqlite 10000] [--postgresql 300] [--due 2000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from _setup import ROOT, machine, postgres, setup_django, verdict, workdir

IDLE_TARGET_MS = 50
PASSES = 20


def create(count: int, prefix: str, owner: Any) -> float:
    """`count` databases; returns the rate a second."""
    from tenantry.databases import lifecycle

    started = time.perf_counter()
    for n in range(count):
        lifecycle.create(f"{prefix}-{n}", by=owner)
    return count / (time.perf_counter() - started)


def settle(now: datetime) -> None:
    """Every database's due work done in this process (the state of a fleet running for a
    while): its jobs run once, its backup due at its own time of day."""
    from tenantry.operations import due
    from tenantry.operations.models import Due
    from tenantry.workspace import jobs

    for row in Due.objects.filter(job=Due.Job.JOBS).select_related("database__server"):
        next_at = jobs.run_due(row.database, now)
        due.done(row.pk, next_at or now + due.DAY)
    for row in Due.objects.filter(job=Due.Job.BACKUP).select_related("database"):
        due.done(row.pk, due.next_backup(row.database, now - timedelta(hours=12)))


def idle_pass(now: datetime) -> tuple[float, float, int]:
    """The median of PASSES passes at `now`, when nothing is due (ms), one pass's peak traced
    memory (KiB), and what the passes claimed (0 expected)."""
    from tenantry.operations.sweep import sweep

    times = []
    claimed_before = _claimed()
    for _ in range(PASSES):
        started = time.perf_counter()
        sweep(now)
        times.append((time.perf_counter() - started) * 1000)
    tracemalloc.start()
    sweep(now)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return statistics.median(times), peak / 1024, _claimed() - claimed_before


def _claimed() -> int:
    from tenantry.operations.models import Due

    return Due.objects.exclude(running_until=None).count()


def busiest_minute(now: datetime) -> tuple[int, int]:
    """Of the next day's backups: the most due in one minute, and the total."""
    from tenantry.operations.models import Due

    rows = Due.objects.filter(job=Due.Job.BACKUP, due_at__lt=now + timedelta(days=1))
    minutes = Counter(
        at.replace(second=0, microsecond=0) for at in rows.values_list("due_at", flat=True)
    )
    return max(minutes.values(), default=0), sum(minutes.values())


def throughput(workers: int, count: int, env: dict[str, str]) -> float:
    """Seconds for `workers` worker processes to run the scheduled jobs of `count` databases,
    all due at once (claimed by a pass, then run as tasks)."""
    from django_tasks_db.models import DBTaskResult

    from tenantry.operations import due
    from tenantry.operations.models import Due

    now = datetime.now().astimezone()
    # Only these jobs due: the backups (spread over the day) later than the measure.
    Due.objects.filter(job=Due.Job.BACKUP).update(due_at=now + timedelta(days=1))
    ids = list(Due.objects.filter(job=Due.Job.JOBS).values_list("pk", flat=True)[:count])
    Due.objects.filter(job=Due.Job.JOBS).update(due_at=now + timedelta(days=1))
    Due.objects.filter(pk__in=ids).update(due_at=now - timedelta(minutes=1), running_until=None)
    DBTaskResult.objects.all().delete()
    claimed = 0
    while batch := due.claim(now):  # a pass claims due.BATCH at most
        claimed += batch
    assert claimed == len(ids), f"{claimed} of {len(ids)} due rows claimed"
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tenantry", "worker"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(workers)
    ]
    started = time.perf_counter()
    try:
        while DBTaskResult.objects.exclude(status__in=["SUCCESSFUL", "FAILED"]).exists():
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
    failed = DBTaskResult.objects.filter(status="FAILED").count()
    assert failed == 0, f"{failed} tasks failed"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sqlite", type=int, default=10_000)
    parser.add_argument("--postgresql", type=int, default=300)
    parser.add_argument("--due", type=int, default=2_000, help="databases for the throughput")
    args = parser.parse_args()
    print(f"Sweep benchmark: {machine()}")

    with (
        workdir() as root,
        postgres(root / "control") as control,
        postgres(root / "tenants") as tenants,
    ):
        control.psql("CREATE DATABASE tenantry")
        data_dir = root / "data"
        setup_django(data_dir, control.url_for("tenantry"))
        from django.core.management import call_command

        call_command("createcachetable", verbosity=0)
        from tenantry.accounts.models import User
        from tenantry.engines.models import Server

        owner = User.objects.create_user("owner@example.com", "x" * 20)
        server = Server(name="pg-1", capacity_bytes=1024**4)
        server.url = tenants.url
        server.save()
        rate = create(args.postgresql, "pg", owner)
        print(f"created {args.postgresql} PostgreSQL databases ({rate:.1f}/s)")
        Server.objects.filter(pk=server.pk).update(draining=True)  # the rest on SQLite

        tenth = max(1, args.sqlite // 10)
        figures = []
        for size, made in [(tenth, 0), (args.sqlite, tenth)]:
            rate = create(size - made, "db" + str(size), owner)
            print(f"created {size - made} SQLite databases ({rate:.1f}/s)")
            now = datetime.now().astimezone()
            settle(now)
            median, peak, claimed = idle_pass(now)
            total = size + args.postgresql
            figures.append((total, median, peak))
            print(
                f"{total:>6} databases: a pass with nothing due {median:.1f} ms (median of "
                f"{PASSES}), peak memory {peak:.0f} KiB, claimed {claimed}"
            )
        (small, small_ms, small_peak), (big, big_ms, big_peak) = figures
        print(
            f"nothing due at {big}: {big_ms:.1f} ms (target < {IDLE_TARGET_MS} ms) "
            f"{verdict(big_ms < IDLE_TARGET_MS)}; time {big_ms / small_ms:.2f}x and peak memory "
            f"{big_peak / small_peak:.2f}x those at {small} "
            f"{verdict(big_ms / small_ms < 2 and big_peak / small_peak < 2)}"
        )
        most, total = busiest_minute(datetime.now().astimezone())
        print(
            f"a day's backups: {total} due within 24 h, at most {most} in one minute "
            f"(evenly: {total / 1440:.1f}) {verdict(most <= max(10, 4 * total / 1440))}"
        )

        env = {**os.environ, "TENANTRY_DATA_DIR": str(data_dir)}
        env["TENANTRY_DATABASE_URL"] = control.url_for("tenantry")
        count = min(args.due, args.sqlite)
        one = throughput(1, count, env)
        print(f"scheduled jobs of {count} databases: 1 worker {one:.1f} s ({count / one:.0f}/s)")
        for workers in (2, 4):
            took = throughput(workers, count, env)
            print(
                f"  {workers} workers {took:.1f} s ({count / took:.0f}/s): "
                f"{one / took:.2f}x one worker"
            )
        from django.db import connections

        connections.close_all()


if __name__ == "__main__":
    main()
