"""The sweep at scale: per-database work found by its due time (a pass costs what is due, not
the number of databases), claimed once whatever the number of workers, backups spread over the
day, queued mail claimed before it is sent and sent within seconds, the sweep's own lock, a
database without storage, and the pass's clock."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from tenantry.accounts.models import User
from tenantry.databases import lifecycle
from tenantry.databases.models import Database
from tenantry.engines.fleet import engine_for
from tenantry.operations import due
from tenantry.operations import sweep as sweeping
from tenantry.operations.models import Due
from tenantry.workspace import models as ws
from tenantry.workspace import releases, tenant
from tenantry.workspace.mail import queue_mail, send_queued
from tests.conftest import database_records, run_tasks
from tests.helpers import run_due_jobs, signed_in
from tests.smtp import SMTPServer


def tasks(name: str) -> list[DBTaskResult]:
    return list(DBTaskResult.objects.ready().filter(task_path__endswith=f".{name}"))


def idle_pass_queries(count: int, owner: User) -> int:
    """The queries of a pass over `count` more databases, none of whose work is due."""
    database_records(owner, count, f"idle{count}")
    later = timezone.now() + timedelta(hours=1)
    Due.objects.bulk_create(
        Due(database=d, job=job, due_at=later)
        for d in Database.objects.filter(name__startswith=f"idle{count}-")
        for job in Due.Job.values
    )
    Due.objects.exclude(database__name__startswith="idle").update(due_at=later)
    now = timezone.now()
    sweeping.sweep(now)  # the hourly steps run at one pass of the hour: not this one
    with CaptureQueriesContext(connection) as queries:
        sweeping.sweep(now)
    return len(queries)


def test_an_idle_pass_costs_the_same_whatever_the_number_of_databases(owner: User) -> None:
    assert idle_pass_queries(20, owner) == idle_pass_queries(400, owner)
    assert not tasks("run_jobs") and not tasks("write_daily")


def test_a_new_database_has_its_work_due_at_once(engine_kind: str, owner: User) -> None:
    shop = lifecycle.create("shop", by=owner)
    rows = dict(Due.objects.filter(database=shop).values_list("job", "due_at"))
    assert set(rows) == {"jobs", "backup"}
    assert all(at <= timezone.now() for at in rows.values())


def test_due_work_is_claimed_once_and_again_only_after_its_lease(
    engine_kind: str, owner: User
) -> None:
    shop = lifecycle.create("shop", by=owner)
    now = timezone.now()
    assert due.claim(now) == 2  # its jobs and its backup
    assert due.claim(now) == 0  # another worker sweeping at the same time finds nothing
    assert len(tasks("run_jobs")) == len(tasks("write_daily")) == 1
    jobs_row = Due.objects.get(database=shop, job=Due.Job.JOBS)
    assert jobs_row.running_until == now + due.LEASES["jobs"]
    # Its worker died: once the lease has passed, it is claimed again.
    assert due.claim(now + timedelta(minutes=29)) == 0
    assert due.claim(now + timedelta(minutes=31)) == 1
    run_tasks()
    jobs_row.refresh_from_db()
    assert jobs_row.running_until is None and jobs_row.due_at > now


def test_daily_backups_are_spread_over_the_day(owner: User) -> None:
    database_records(owner, 240, "spread")
    now = timezone.now()
    hours = [due.next_backup(d, now).hour for d in Database.objects.all()]
    # 240 databases over 24 hours: about 10 an hour, never most of them in one.
    assert len(set(hours)) >= 20 and max(hours.count(h) for h in set(hours)) <= 30


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_a_database_without_its_storage_logs_a_line_and_waits_longer_each_time(
    engine_kind: str, owner: User, caplog: pytest.LogCaptureFixture
) -> None:
    shop = lifecycle.create("shop", by=owner)
    Due.objects.filter(database=shop, job=Due.Job.BACKUP).update(
        due_at=timezone.now() + timedelta(days=1)
    )
    engine_for(shop).drop(shop.physical_name)  # the file is gone
    now = timezone.now()
    with caplog.at_level(logging.WARNING):
        run_due_jobs(now)
    row = Due.objects.get(database=shop, job=Due.Job.JOBS)
    assert row.failures == 1 and row.due_at == now + timedelta(hours=1)
    [record] = [r for r in caplog.records if "Scheduled jobs failed in shop" in r.getMessage()]
    assert record.exc_info is None  # a line, not a traceback
    run_due_jobs(now + timedelta(minutes=30))  # not due yet: nothing
    assert Due.objects.get(pk=row.pk).failures == 1
    run_due_jobs(now + timedelta(hours=1))
    row.refresh_from_db()
    assert row.failures == 2 and row.due_at == now + timedelta(hours=3)


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_the_passs_clock_decides_what_has_expired(
    engine_kind: str, owner: User, smtp_mail: SMTPServer
) -> None:
    shop = lifecycle.create("shop", by=owner)
    with tenant.using(shop) as db:
        queue_mail(db, "customer@example.com", "Hello", "Hi")
    later = timezone.now() + timedelta(days=30)  # past its trial's end by the pass's clock
    assert not shop.is_expired
    run_due_jobs(later)
    with tenant.using(shop) as db:
        assert ws.Mail.objects.using(db).get().state == "queued"  # an expired database sends none
    assert Due.objects.get(database=shop, job=Due.Job.JOBS).due_at == later + due.EXPIRED_LATER


def test_a_mail_is_claimed_before_it_is_sent_so_two_senders_send_it_once(
    engine_kind: str, owner: User, smtp_mail: SMTPServer
) -> None:
    shop = lifecycle.create("shop", by=owner)
    with tenant.using(shop) as db:
        for n in range(3):
            queue_mail(db, f"c{n}@example.com", f"Mail {n}", "Hi")
        # Another worker's sender reads the same queued mails, then this one sends them.
        theirs = list(ws.Mail.objects.using(db).filter(state="queued"))
        assert send_queued(db, "shop <noreply@tenantry.localhost>") == 3
        for mail in theirs:
            claimed = ws.Mail.objects.using(db).filter(pk=mail.pk, state="queued")
            assert claimed.update(state="sent") == 0  # nothing left for them to claim
        assert send_queued(db, "shop <noreply@tenantry.localhost>") == 0
    assert sorted(m.subject for m in smtp_mail.messages) == ["Mail 0", "Mail 1", "Mail 2"]


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_a_message_written_in_the_workspace_leaves_within_seconds(
    engine_kind: str,
    owner: User,
    smtp_mail: SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    shop = lifecycle.create("shop", by=owner)
    contact = releases.model(shop.release, "Contact")
    with tenant.using(shop) as db:
        ada = contact.objects.using(db).create(name="Ada", email="ada@example.com")
    client = signed_in(shop, owner)
    message = {"action": "send", "subject": "Your order", "body": "Hello"}
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(f"/contacts/{ada.pk}/", message).status_code == 302
    [sending] = tasks("send_now")  # not at the next run of the sending job
    sending.task.call(*sending.args_kwargs["args"])
    assert smtp_mail.wait_for("ada@example.com").subject == "Your order"


def test_one_sweep_at_a_time_and_once_a_minute(
    owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    passes: list[Any] = []
    monkeypatch.setattr(sweeping, "sweep", passes.append)
    cache.delete_many([sweeping.LOCK, sweeping.LAST])
    cache.set(sweeping.LOCK, "another worker's", timeout=60)
    assert sweeping.sweep_once() is False and passes == []  # another worker sweeps
    cache.delete(sweeping.LOCK)
    assert sweeping.sweep_once() is True and len(passes) == 1
    assert cache.get(sweeping.LOCK) is None  # given back at the end of the pass
    assert sweeping.sweep_once() is False  # the next one a minute after this one began
    cache.set(sweeping.LAST, timezone.now() - timedelta(seconds=sweeping.INTERVAL_SECONDS))
    assert sweeping.sweep_once() is True and len(passes) == 2


def test_template_builds_a_dead_process_left_are_removed_hourly(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tenantry.engines import fleet

    engine = fleet.sqlite_engine()
    engine.root.mkdir(parents=True, exist_ok=True)
    name = f"{engine.template_name('1.1')}_b{int(timezone.now().timestamp()) - 7200}_dead"
    engine.path(name).write_bytes(b"half a template")
    listed: list[int] = []
    real = type(engine)._templates
    monkeypatch.setattr(type(engine), "_templates", lambda self: listed.append(1) or real(self))
    cache.delete("tenantry:sweep-builds")
    now = timezone.now()
    sweeping.sweep(now)
    assert not engine.path(name).exists() and len(listed) == 1
    sweeping.sweep(now + timedelta(minutes=30))  # the folder is not listed at every pass
    assert len(listed) == 1
    sweeping.sweep(now + timedelta(hours=1))
    assert len(listed) == 2
