"""The periodic sweep: what must happen with time, run by every worker but once at a time."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db import close_old_connections
from django.utils import timezone

logger = logging.getLogger(__name__)

INTERVAL_SECONDS = 60
EXPIRY_WARNING = timedelta(days=3)


def sweep(now: datetime | None = None) -> None:
    """Resume stalled operations, warn of and remove expired copies, clear failed creations."""
    from tenantry.databases.lifecycle import (
        delete_expired_copies,
        remove_abandoned_creations,
        warn_of_expiry,
    )
    from tenantry.operations.tasks import recover

    now = now or timezone.now()
    recover()
    warn_of_expiry(now, EXPIRY_WARNING)
    delete_expired_copies(now)
    remove_abandoned_creations(now)


def run_periodically() -> None:
    """The loop beside each worker. A lock in the shared cache keeps it to one run a minute."""
    while True:
        close_old_connections()
        try:
            if cache.add("tenantry:sweep", "1", timeout=INTERVAL_SECONDS - 5):
                sweep()
        except Exception:
            logger.exception("The sweep failed; it runs again in a minute")
        threading.Event().wait(INTERVAL_SECONDS)


def start_sweeper() -> threading.Thread:
    thread = threading.Thread(target=run_periodically, name="tenantry-sweep", daemon=True)
    thread.start()
    return thread
