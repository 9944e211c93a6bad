"""The periodic sweep: what must happen with time. Time is a parameter, so tests move it."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections
from django.utils import timezone

logger = logging.getLogger(__name__)

INTERVAL_SECONDS = 60
EXPIRY_WARNING = timedelta(days=3)


def sweep(now: datetime | None = None) -> None:
    """Renew, end and expire subscriptions and trials, warn of and remove expired copies,
    clear creations and template builds that never finished, remind of upgrade deadlines and
    upgrade the databases past theirs, check custom domains' records, queue the daily
    backups, clear abandoned backup files, purge expired invitations and sign-in tokens, run
    the databases' scheduled jobs (their outgoing mail among them), and remove activity
    entries past their time."""
    from tenantry.backups import store
    from tenantry.billing import subscriptions
    from tenantry.databases import activity, members
    from tenantry.databases.lifecycle import (
        delete_expired_copies,
        remove_abandoned_creations,
        warn_of_expiry,
    )
    from tenantry.domains import verbs as domains
    from tenantry.engines.fleet import remove_abandoned_builds
    from tenantry.releases import upgrade
    from tenantry.workspace import jobs

    now = now or timezone.now()
    steps = [
        lambda: subscriptions.sweep(now),
        lambda: warn_of_expiry(now, EXPIRY_WARNING),
        lambda: delete_expired_copies(now),
        lambda: remove_abandoned_creations(now),
        lambda: remove_abandoned_builds(now),
        lambda: store.schedule_daily(now),
        lambda: store.remove_abandoned(now),
        lambda: members.purge_expired(now),
        lambda: upgrade.sweep(now),
        lambda: domains.sweep(now),
        lambda: jobs.run_everywhere(now),
        lambda: activity.purge(now),
    ]
    # One step that fails (a server down, a database that cannot be dropped) stops no other.
    with activity.channel(activity.Activity.Channel.SWEEP):
        for step in steps:
            try:
                step()
            except Exception:
                logger.exception("A step of the sweep failed; it runs again at the next sweep")


def run_periodically() -> None:
    """The loop beside each worker: it takes over dead workers' operations as soon as they
    go quiet, and runs the sweep once a minute across all workers (a lock in the shared
    cache)."""
    from tenantry.operations.tasks import recover

    tick = max(1.0, min(INTERVAL_SECONDS, settings.OPERATION_STALE_SECONDS / 2))
    while True:
        close_old_connections()
        try:
            recover()
            if cache.add("tenantry:sweep", "1", timeout=INTERVAL_SECONDS - 5):
                sweep()
        except Exception:
            logger.exception("The sweep failed; it runs again soon")
        threading.Event().wait(tick)


def start_sweeper() -> threading.Thread:
    thread = threading.Thread(target=run_periodically, name="tenantry-sweep", daemon=True)
    thread.start()
    return thread
