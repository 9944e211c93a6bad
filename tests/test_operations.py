"""Operations: a dead worker's operation is queued again and finished by another."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.databases import lifecycle
from tenantry.databases.models import Database
from tenantry.operations.models import Operation
from tenantry.operations.tasks import claim, recover, run_operation


def test_a_stalled_operation_is_queued_again_once_and_then_finished(owner: User) -> None:
    source = Database.create_for(owner, "ops")
    try:
        operation = lifecycle.start_duplicate(source, "ops-copy")
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
            database.drop_storage()
