"""Operations: a dead worker's operation is queued again and finished by another."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import OperationalError
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.backups import restore, store
from tenantry.backups.models import Backup
from tenantry.databases import lifecycle
from tenantry.databases.models import Database
from tenantry.engines.base import DatabaseHeld
from tenantry.engines.fleet import engine_for, server_engine, sqlite_engine
from tenantry.operations.models import KINDS, Kind, Operation
from tenantry.operations.tasks import _heartbeat, claim, recover, run_operation
from tenantry.portal.management.commands._server import make_worker
from tenantry.workspace import releases, tenant
from tests.conftest import api
from tests.helpers import killed_while_holding, run_again, write


def test_a_stalled_operation_is_queued_again_once_and_then_finished(owner: User) -> None:
    source = lifecycle.create("ops", by=owner)
    try:
        operation = lifecycle.start_duplicate(source, "ops-copy", by=None)
        # A worker took it and died: running, heartbeat long gone.
        long_ago = timezone.now() - timedelta(minutes=5)
        Operation.objects.filter(pk=operation.pk).update(state="running", heartbeat_at=long_ago)
        assert claim(operation.pk) is None  # nobody takes a running operation directly

        assert recover() == 1
        operation.refresh_from_db()
        assert operation.state == "queued"
        assert recover() == 0  # not handed out again before another quiet period

        run_operation.call(operation.pk)
        operation.refresh_from_db()
        assert operation.state == "done", operation.error
        assert Database.objects.get(name="ops-copy").status == "active"
    finally:
        for database in Database.objects.all():
            lifecycle.drop_storage(database)


def test_a_missed_heartbeat_does_not_stop_the_next_ones(settings: Any) -> None:
    """A control plane busy for a moment fails one beat: the beats go on, or the operation
    would look dead and be handed to another worker while it runs."""
    settings.OPERATION_STALE_SECONDS = 2  # a beat every half second
    beats: list[str] = []

    class Running:
        pk = 1

        def beat(self) -> None:
            beats.append("beat")
            if len(beats) == 1:
                raise OperationalError("database is locked")

    stop = threading.Event()
    heart = threading.Thread(target=_heartbeat, args=(Running(), stop))
    heart.start()
    deadline = time.monotonic() + 10
    while len(beats) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    heart.join()
    assert len(beats) >= 3


def test_an_operation_killed_after_its_last_step_is_not_done_again(
    engine_kind: str, owner: User
) -> None:
    """Killed once the copy or the restored database was open, before it was marked done:
    the next worker only marks it done. What users wrote meanwhile stays."""
    source = lifecycle.create("ops", by=owner)
    with store.open_file(store.make(source, Backup.Kind.DAILY)) as file:
        upload = restore.keep_upload(io.BytesIO(file.read()), owner)
    started = [
        lifecycle.start_duplicate(source, "ops-copy", by=None),
        restore.start(upload, "ops-restored", by=owner),
    ]
    for operation in started:
        run_operation.call(operation.pk)
    for name in ("ops-copy", "ops-restored"):
        write(Database.objects.get(name=name))
    for operation in started:
        assert run_again(operation).state == "done", operation.error
    for name in ("ops-copy", "ops-restored"):
        database = Database.objects.get(name=name)
        assert database.status == "active"
        Contact = releases.model(database.release, "Contact")
        with tenant.using(database) as db:
            assert Contact.objects.using(db).filter(name="written by a user").exists()


def test_a_hold_a_killed_worker_left_is_lifted_when_its_restore_fails(
    engine_kind: str, owner: User
) -> None:
    shop = lifecycle.create("ops", by=owner)
    saved = store.make(shop, Backup.Kind.DAILY)
    operation = restore.start(saved, shop, by=owner)
    killed_while_holding(engine_for(shop).held(shop.physical_name))  # backing it up first
    if engine_kind == "postgresql":
        with pytest.raises(DatabaseHeld):
            write(shop)
    else:  # the write lock went with the process; the mark that shortens waits did not
        assert list(sqlite_engine().root.glob("*.held"))
    store.discard(saved)  # so the next attempt fails before it holds the database again
    operation = run_again(operation)
    assert operation.state == "failed" and "no longer stored" in operation.error
    write(shop)
    assert not list(sqlite_engine().root.glob("*.held"))


@pytest.mark.parametrize("engine_kind", ["postgresql"], indirect=True)
def test_a_source_a_killed_worker_closed_is_opened_when_its_duplicate_fails(
    engine_kind: str, owner: User
) -> None:
    source = lifecycle.create("ops", by=owner)
    operation = lifecycle.start_duplicate(source, "ops-copy", by=None)
    engine = server_engine(source.server)  # type: ignore[arg-type]
    killed_while_holding(engine.closed(source.physical_name))  # in the middle of the copy

    def accepts_connections() -> bool:
        with engine.admin() as db:
            query = "SELECT datallowconn FROM pg_database WHERE datname = %s"
            return db.execute(query, [source.physical_name]).fetchone()[0]  # type: ignore[index,no-any-return]

    assert not accepts_connections()
    Database.objects.filter(name="ops-copy").delete()  # so the next attempt fails at once
    operation = run_again(operation)
    assert operation.state == "failed" and "no longer exists" in operation.error
    assert accepts_connections()
    write(source)


def test_an_operation_killed_while_being_undone_is_undone_for_its_first_reason(
    engine_kind: str, owner: User, caplog: pytest.LogCaptureFixture
) -> None:
    source = lifecycle.create("ops", by=owner)
    operation = lifecycle.start_duplicate(source, "ops-copy", by=None)
    copy = Database.objects.get(name="ops-copy")
    engine = engine_for(source)
    # The copy failed half made, and its worker was killed while undoing it.
    engine.clone(source.physical_name, copy.physical_name)
    Operation.objects.filter(pk=operation.pk).update(error="The disk is full.")
    operation = run_again(operation)
    assert (operation.state, operation.error) == ("failed", "The disk is full.")
    # A refusal with its sentence is no error of ours: logged without a traceback.
    assert not [r for r in caplog.records if r.exc_info]
    assert not Database.objects.filter(name="ops-copy").exists()
    assert not engine.exists(copy.physical_name)
    write(source)


def wait_for(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "waited in vain"
        time.sleep(0.1)


def test_one_account_cannot_take_every_worker(
    transactional_db: None, owner: User, outsider: User
) -> None:
    """The attack: an account starts slow operations on several of its databases at once
    (restores of crafted uploads). With `tenantry serve`'s three workers, another account's
    operation still runs at once, and the first account's wait their turn."""
    release = threading.Event()
    KINDS["test_slow"] = Kind("Slow", run=lambda operation: release.wait(60), undo=print)
    workers = [make_worker() for _ in range(3)]
    try:
        slow = [
            Operation.start("test_slow", lifecycle.create(f"slow-{n}", by=owner), by=owner)
            for n in range(3)
        ]
        for worker in workers:
            threading.Thread(target=worker.run, daemon=True).start()

        def running() -> list[int]:
            return [o.pk for o in Operation.objects.filter(kind="test_slow", state="running")]

        wait_for(lambda: len(running()) == 2)
        lifecycle.create("theirs", by=outsider)
        response = api(outsider).post(
            "/api/v1/databases/theirs/duplicate",
            {"name": "theirs-copy"},
            content_type="application/json",
        )
        assert response.status_code == 202, response.content
        copy = response.json()["id"]
        wait_for(lambda: Operation.objects.get(pk=copy).state == "done")
        assert len(running()) == 2  # the third of the first account waits
        [waiting] = [o for o in slow if o.pk not in running()]
        assert Operation.objects.get(pk=waiting.pk).state == "queued"
        release.set()
        wait_for(lambda: Operation.objects.filter(kind="test_slow", state="done").count() == 3)
    finally:
        release.set()
        for worker in workers:
            worker.running = False
        del KINDS["test_slow"]
        for database in Database.objects.all():
            lifecycle.drop_storage(database)


def test_an_operation_kind_without_a_runner_fails_the_system_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.core.checks import registry

    from tenantry.operations.checks import every_kind_has_a_runner
    from tenantry.operations.models import KINDS

    assert every_kind_has_a_runner in registry.registry.get_checks()
    assert every_kind_has_a_runner() == []
    monkeypatch.delitem(KINDS, "move")
    assert [e.msg for e in every_kind_has_a_runner()] == [
        "The operation kind “move” has no runner."
    ]


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_a_worker_that_went_quiet_and_was_replaced_stops_without_finishing_or_undoing(
    engine_kind: str, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frozen process (a paused machine) wakes after another worker took its operation
    over: its writes are refused, and it neither finishes nor undoes what the other runs."""
    shop = lifecycle.create("shop", by=owner)
    undone: list[int] = []
    taken: list[Operation] = []

    def run(operation: Operation) -> None:
        operation.advance(10, "Copying")
        # Meanwhile: this worker went quiet; recover() handed the operation to another.
        stale = timezone.now() - timedelta(hours=1)
        Operation.objects.filter(pk=operation.pk).update(heartbeat_at=stale)
        assert recover() == 1
        other = claim(operation.pk)
        assert other is not None
        taken.append(other)
        operation.advance(50, "Still copying")  # the woken worker's next write

    monkeypatch.setitem(KINDS, "duplicate", Kind("Duplicate", run, lambda op: undone.append(op.pk)))
    operation = Operation.start("duplicate", shop, by=owner)
    run_operation.call(operation.pk)
    operation.refresh_from_db()
    assert (operation.state, operation.attempt, operation.step) == ("running", 2, "Copying")
    assert undone == [] and operation.finished_at is None
    # The other worker's own writes go through, to the end.
    [other] = taken
    other.advance(90, "Almost")
    other.finish(Operation.State.DONE)
    operation.refresh_from_db()
    assert operation.state == "done"
