"""Upgrade benchmark: a ~1 GB PostgreSQL database at release 1.1 with ~1 million contacts,
taken to the latest release through the product, against Django's `migrate` on a copy.

Targets (ratios in one run, same server, same data):
- the production upgrade (its migration step; the backup before it is excluded, and printed)
  at most 1.2 times `migrate` of the same migrations on a copy made with `createdb -T`;
- the test upgrade (the duplicate, then the upgrade of the copy) at most 1.2 times
  `createdb -T` plus that `migrate`.
Also printed: how long writes were held (the production upgrade's one transaction: writers of
the tables it changes wait for it; the others go on).

An untimed `createdb -T` warms the page cache first (see duplicate.py: the first copy of a
fresh 1 GB database is several times slower, whoever makes it).

    .venv/bin/python bench/upgrade.py [--size-mb 1024] [--to 2.1] [--durable]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duplicate
from _setup import (
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
from duplicate import CONTACTS_RELEASE

MAX_RATIO = 1.2


def timed(function: Callable[[], Any]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def bench(base: Path, size: int, target: str, durable: bool) -> None:
    setup_django(base / "data")
    from django.core.management import call_command
    from django.utils import timezone

    from tenantry.accounts.models import User
    from tenantry.backups import store
    from tenantry.databases import lifecycle
    from tenantry.engines.fleet import engine_for
    from tenantry.engines.models import Server
    from tenantry.operations.tasks import run_operation
    from tenantry.releases import models as releases
    from tenantry.releases import upgrade
    from tenantry.releases.models import Upgrade
    from tenantry.workspace.releases import RELEASES

    with postgres(base / "pg", durable) as server:
        print(
            f"PostgreSQL {server.psql('SHOW server_version')} ({durability(server)}); {machine()}"
        )
        record = Server(name="bench")
        record.url = server.url
        record.save()
        owner = User.objects.create_user("bench@example.com", password="x")
        database = lifecycle.create("bench", by=owner)
        assert database.release == CONTACTS_RELEASE, database.release
        source = database.physical_name
        engine = engine_for(database)
        started = time.perf_counter()
        duplicate.SOURCE = source  # fill_postgres fills the database of that name
        rows = duplicate.fill_postgres(server, size)
        server.psql("VACUUM ANALYZE; CHECKPOINT", db=source)
        print(
            f"  database: {size_text(engine.size(source))}, {rows:,} contacts at "
            f"{CONTACTS_RELEASE} (filled in {time.perf_counter() - started:.0f} s)"
        )
        for version in RELEASES:
            if releases.version_key(version) <= releases.version_key(target):
                releases.publish(version, timezone.now())

        def createdb(name: str) -> None:
            run(client_command(server, "createdb", "-T", source, name))

        def checkpoint() -> None:
            server.psql("CHECKPOINT")

        createdb("tn_bench_warm")  # untimed
        engine.drop("tn_bench_warm")

        # The baseline: createdb -T, then Django's migrate on the copy.
        checkpoint()
        copy_seconds = timed(lambda: createdb("tn_bench_baseline"))
        alias = engine.connect("tn_bench_baseline")
        migration = RELEASES[target]
        checkpoint()
        migrate_seconds = timed(
            lambda: call_command("migrate", "workspace", migration, database=alias, verbosity=0)
        )
        engine.drop("tn_bench_baseline")
        print(f"  createdb -T:                      {copy_seconds:7.2f} s")
        print(f"  migrate to {target} on the copy:       {migrate_seconds:7.2f} s")

        # The test upgrade, through the product.
        checkpoint()
        operation = upgrade.start(database, target, test=True, by=owner)
        test_seconds = timed(lambda: run_operation.call(operation.pk))
        report = Upgrade.objects.get(operation=operation)
        assert report.state == "succeeded", report.error
        copy = report.copy
        assert copy is not None
        lifecycle.drop_storage(copy)
        copy.delete()
        print(f"  test upgrade (duplicate + upgrade): {test_seconds:7.2f} s")

        # The production upgrade, through the product; its backup timed apart.
        backup_seconds = 0.0
        make_first = store.make_first

        def timed_backup(*args: Any) -> None:
            nonlocal backup_seconds
            backup_seconds = timed(lambda: make_first(*args))
            checkpoint()

        store.make_first = timed_backup  # type: ignore[assignment]
        migrating = 0.0
        migrate_step = upgrade._migrate

        def timed_migrate(*args: Any) -> None:
            nonlocal migrating
            migrating = timed(lambda: migrate_step(*args))

        upgrade._migrate = timed_migrate  # type: ignore[assignment]
        operation = upgrade.start(database, target, by=owner)
        total = timed(lambda: run_operation.call(operation.pk))
        report = Upgrade.objects.get(operation=operation)
        assert report.state == "succeeded", report.error
        contacts = next(row for row in report.tables if row["table"] == "workspace_contact")
        assert contacts["before"] == contacts["after"] == rows, contacts
        print(f"  backup before the upgrade:         {backup_seconds:7.2f} s (excluded)")
        print(f"  production upgrade:                {migrating:7.2f} s (all: {total:.2f} s)")
        print(f"  writes held (its transaction):     {migrating:7.2f} s at most")

        production = migrating / migrate_seconds
        test = test_seconds / (copy_seconds + migrate_seconds)
        print(
            f"  ratio production upgrade / migrate: {production:.2f} (target <= {MAX_RATIO})"
            f"  {verdict(production <= MAX_RATIO)}"
        )
        print(
            f"  ratio test upgrade / (createdb -T + migrate): {test:.2f} (target <= {MAX_RATIO})"
            f"  {verdict(test <= MAX_RATIO)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--to", default="2.1", help="the release to upgrade to")
    parser.add_argument("--durable", action="store_true", help="fsync and full page writes on")
    args = parser.parse_args()
    with workdir() as base:
        bench(base, args.size_mb * 1024 * 1024, args.to, args.durable)


if __name__ == "__main__":
    main()
