"""Long and destructive actions as durable records, run by the task worker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.dispatch import Signal
from django.utils import timezone

if TYPE_CHECKING:
    from tenantry.accounts.models import User

ACTIVE_STATES = ("queued", "running")


class OperationBusy(ValidationError):
    """Another operation is already under way on this database: a refusal like the others."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="busy")


class TakenOver(Exception):
    """Another worker took the operation over (this one went quiet for too long: a frozen
    process, a paused machine): this one must stop, writing nothing more."""


# Sent when an operation ends (done or failed): the activity entry of its action takes the end.
finished = Signal()


@dataclass
class Kind:
    """What an operation kind does: `run` resumes from any point, `undo` removes what it made."""

    label: str
    run: Callable[[Operation], None]
    undo: Callable[[Operation], None]


KINDS: dict[str, Kind] = {}  # filled by the apps that own the actions (databases.lifecycle)
# Every kind an operation may have: each needs a runner in KINDS (a system check says so at
# start-up, not a worker at the first such operation).
KIND_NAMES = ("duplicate", "delete", "move", "restore", "upgrade", "refresh")


class Operation(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued", "Waiting"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=30)
    database = models.ForeignKey(
        "databases.Database", models.SET_NULL, null=True, related_name="operations"
    )
    # The database's name when the operation started, kept after it is renamed or deleted.
    database_name = models.CharField(max_length=63)
    # A database the operation makes (the copy of a duplicate).
    target = models.ForeignKey(
        "databases.Database", models.SET_NULL, null=True, blank=True, related_name="+"
    )
    params = models.JSONField(default=dict)
    state = models.CharField(
        max_length=10, choices=State.choices, default=State.QUEUED, db_index=True
    )
    progress = models.PositiveSmallIntegerField(default=0)
    step = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Each claim by a worker counts one: a worker writes only while the attempt is still its
    # own (see save), so one that went quiet and was replaced cannot finish or undo it too.
    attempt = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One operation at a time per database.
            models.UniqueConstraint(
                fields=["database"],
                condition=Q(state__in=ACTIVE_STATES),
                name="one_active_operation_per_database",
            )
        ]

    # The part of the progress bar the running work fills: a test upgrade runs a duplicate in
    # its first half (see advance).
    span = (0, 100)

    def __str__(self) -> str:
        return f"{self.label} {self.database_name} ({self.get_state_display()})"

    # Set by the worker that claimed it (operations.tasks.claim): its saves are fenced.
    owned = False

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.owned:
            super().save(*args, **kwargs)
            return
        with transaction.atomic():
            mine = Operation.objects.select_for_update().filter(
                pk=self.pk, attempt=self.attempt, state=self.State.RUNNING
            )
            if not mine.exists():
                raise TakenOver(f"Operation {self.pk} was taken over by another worker.")
            super().save(*args, **kwargs)

    @property
    def label(self) -> str:
        return KINDS[self.kind].label if self.kind in KINDS else self.kind

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @classmethod
    def start(cls, kind: str, database: Any, *, by: User | None = None, **fields: Any) -> Operation:
        """Record the operation and hand it to the worker; refuse if the database is busy."""
        try:
            with transaction.atomic():
                operation = cls.objects.create(
                    kind=kind, database=database, database_name=database.name or "",
                    created_by=by, **fields,
                )  # fmt: skip
        except IntegrityError:
            raise OperationBusy(
                f"Another operation is already running on “{database.name}”. Wait for it to finish."
            )
        operation.enqueue()
        return operation

    def enqueue(self) -> None:
        from tenantry.operations.tasks import run_operation

        transaction.on_commit(lambda: run_operation.enqueue(self.pk))

    def advance(self, progress: int, step: str) -> None:
        low, high = self.span
        self.progress = low + progress * (high - low) // 100
        self.step, self.heartbeat_at = step, timezone.now()
        self.save(update_fields=["progress", "step", "heartbeat_at"])

    def beat(self) -> None:
        mine = Operation.objects.filter(pk=self.pk, attempt=self.attempt, state=self.State.RUNNING)
        mine.update(heartbeat_at=timezone.now())

    def finish(self, state: str, error: str = "") -> None:
        self.state, self.error, self.finished_at = state, error, timezone.now()
        if state == self.State.DONE:
            self.progress, self.step = 100, "Done"
        with transaction.atomic():  # the activity entry ends with it
            self.save(update_fields=["state", "error", "finished_at", "progress", "step"])
            finished.send(Operation, operation=self)

    @classmethod
    def stalled(cls, now: Any = None) -> models.QuerySet[Operation]:
        """Operations whose worker died: running without a heartbeat, or never picked up
        (a queued one is handed out again at most once per period: see recover)."""
        now = now or timezone.now()
        limit = now - timedelta(seconds=settings.OPERATION_STALE_SECONDS)
        quiet = Q(heartbeat_at__lt=limit) | Q(heartbeat_at=None, created_at__lt=limit)
        return cls.objects.filter(quiet, state__in=ACTIVE_STATES)


class Due(models.Model):
    """When a database's periodic work is next due. The sweep finds what is due by this index
    (a pass costs what is due, not the number of databases), claims it until `running_until`
    and hands it to the workers as a task: a database's job never runs twice at once."""

    class Job(models.TextChoices):
        JOBS = "jobs", "Scheduled jobs"  # the workspace's own (its outgoing mail among them)
        BACKUP = "backup", "Daily backup"

    database = models.ForeignKey("databases.Database", models.CASCADE, related_name="+")
    job = models.CharField(max_length=10, choices=Job.choices)
    due_at = models.DateTimeField(db_index=True)
    running_until = models.DateTimeField(null=True, blank=True)
    failures = models.PositiveSmallIntegerField(default=0)  # in a row: the backoff grows

    class Meta:
        constraints = [models.UniqueConstraint(fields=["database", "job"], name="one_due_per_job")]

    def __str__(self) -> str:
        return f"{self.job} of {self.database_id} at {self.due_at}"  # type: ignore[attr-defined]
