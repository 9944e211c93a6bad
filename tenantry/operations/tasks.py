from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.tasks import task
from django.utils import timezone
from psycopg import InterfaceError as PgInterfaceError
from psycopg import OperationalError as PgOperationalError

from tenantry.engines.base import EngineError
from tenantry.operations.models import KINDS, Kind, Operation, TakenOver

logger = logging.getLogger(__name__)
User = get_user_model()


def claim(operation_id: int) -> Operation | None:
    """Take the operation for this worker, unless another worker already has it, or its
    account already has OPERATIONS_PER_ACCOUNT running: then it waits for its turn (see
    hand_on_turn), so that one account's operations never take every worker from the others."""
    now = timezone.now()
    account = Operation.objects.filter(pk=operation_id).values_list("created_by", flat=True)
    with transaction.atomic():
        # One claim at a time per account: two at once would each count the other as queued.
        list(User.objects.select_for_update().filter(pk__in=account).values_list("pk"))
        its_account_running = (
            Operation.objects.filter(
                created_by=OuterRef("created_by"), state=Operation.State.RUNNING
            )
            .values("created_by")
            .annotate(count=Count("pk"))
            .values("count")
        )
        taken = (
            Operation.objects.filter(pk=operation_id, state=Operation.State.QUEUED)
            .annotate(running=Coalesce(Subquery(its_account_running), 0))
            .filter(Q(created_by=None) | Q(running__lt=settings.OPERATIONS_PER_ACCOUNT))
            .update(state=Operation.State.RUNNING, heartbeat_at=now, attempt=F("attempt") + 1)
        )
    if not taken:
        # Queued still (its turn comes when one of its account's ends), and not stalled.
        Operation.objects.filter(pk=operation_id, state=Operation.State.QUEUED).update(
            heartbeat_at=now
        )
        return None
    operation = Operation.objects.get(pk=operation_id)
    operation.owned = True
    if operation.started_at is None:
        operation.started_at = now
        operation.save(update_fields=["started_at"])
    return operation


def reason(error: BaseException) -> str:
    if isinstance(error, ValidationError):
        return " ".join(error.messages)
    if isinstance(error, EngineError):
        return str(error)
    if server_unreachable(error):
        detail = str(error).strip().splitlines()[0] if str(error).strip() else "no answer"
        return f"A database server stopped answering ({detail}). Try again once it is back."
    return f"An unexpected error stopped the operation ({type(error).__name__}). It was undone."


# PostgreSQL's codes for a connection that failed or ended: class 08, and the server shutting
# down (57P01-57P03). psycopg gives none when it cannot connect or the server goes silent.
_GONE = ("08", "57P01", "57P02", "57P03")


def server_unreachable(error: BaseException) -> bool:
    """Whether a database server stopped answering (down, restarting): a fault that passes,
    unlike a refusal or a bug."""
    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and cause not in chain:  # what it was raised from, or during
        chain.append(cause)
        if isinstance(cause, PgOperationalError | PgInterfaceError):
            return cause.sqlstate is None or cause.sqlstate.startswith(_GONE)
        cause = cause.__cause__ or cause.__context__
    return False


@task
def run_operation(operation_id: int) -> None:
    operation = claim(operation_id)
    if operation is None:
        return
    kind = KINDS[operation.kind]
    stop = threading.Event()
    heart = threading.Thread(target=_heartbeat, args=(operation, stop), daemon=True)
    heart.start()
    try:
        _run(operation, kind)
    except TakenOver:
        # It went quiet too long and another worker has it now: that one finishes or undoes
        # it; this one writes nothing more (its saves are refused).
        logger.warning(
            "Operation %s was taken over by another worker; this one stops", operation.pk
        )
    finally:
        stop.set()
        heart.join()
        hand_on_turn(operation)


def _run(operation: Operation, kind: Kind) -> None:
    try:
        if operation.error:  # its worker was killed while undoing it: undo, for that reason
            raise ValidationError(operation.error)
        kind.run(operation)
    except TakenOver:
        raise
    except Exception as error:
        if isinstance(error, ValidationError | EngineError):  # with its sentence (a bad backup...)
            logger.info("Operation %s refused: %s", operation.pk, reason(error))
        else:
            logger.exception("Operation %s failed", operation.pk)
        operation.error = reason(error)
        operation.save(update_fields=["error"])
        try:
            kind.undo(operation)
        except TakenOver:
            raise
        except Exception as undo_error:
            if server_unreachable(undo_error):
                # What it began stays until its server answers: the operation stays running
                # without a heartbeat, so recover() hands it out again and the undo is retried
                # (see operation.error above), rather than leaving it half-made for good.
                logger.warning("Undoing operation %s waits for its server: %s", operation.pk,
                               reason(undo_error))  # fmt: skip
                operation.step = "Stopped: undoing what it began once the server answers"
                operation.save(update_fields=["step"])
                return
            logger.exception("Undoing operation %s failed", operation.pk)
        operation.finish(Operation.State.FAILED, operation.error)
    else:
        operation.finish(Operation.State.DONE)


def hand_on_turn(operation: Operation) -> None:
    """The account's next waiting operation goes to a worker, now that this one is over."""
    if operation.created_by_id is None:  # type: ignore[attr-defined]
        return
    waiting = Operation.objects.filter(
        created_by=operation.created_by_id,  # type: ignore[attr-defined]
        state=Operation.State.QUEUED,
    )
    following = waiting.order_by("created_at", "pk").first()
    if following is not None:
        run_operation.enqueue(following.pk)


def _heartbeat(operation: Operation, stop: threading.Event) -> None:
    # A long step (copying a large database) must not look like a dead worker.
    interval = max(settings.OPERATION_STALE_SECONDS / 4, 0.5)
    try:
        while not stop.wait(interval):
            try:
                operation.beat()
            except DatabaseError as error:
                # A control plane busy ("database is locked") or restarting: one beat of four
                # in the quiet period may miss; had the thread ended, the operation would be
                # handed to another worker while it runs.
                logger.warning("A heartbeat of operation %s was missed: %s", operation.pk, error)
                connection.close()
    finally:
        connection.close()


def recover() -> int:
    """Hand the operations of dead workers to a live one; their steps resume safely."""
    count = 0
    for operation in Operation.stalled():
        # Queued again, with a fresh heartbeat: handed out once per quiet period at most.
        Operation.objects.filter(pk=operation.pk).update(
            state=Operation.State.QUEUED, heartbeat_at=timezone.now()
        )
        run_operation.enqueue(operation.pk)
        count += 1
    return count
