"""The periodic sweep: what must happen with time. Time is a parameter, so tests move it."""

from __future__ import annotations

import logging
import secrets
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
    upgrade the databases past theirs, check custom domains' records, send again support mails
    that failed, clear abandoned backup
    files, purge expired invitations and sign-in tokens, hand the databases' due work (their
    scheduled jobs, their daily backups) to the workers, and remove activity entries past
    their time. Each step finds what is due by an index: a pass costs what is due, not the
    number of databases."""
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
    from tenantry.operations import due
    from tenantry.releases import upgrade
    from tenantry.support import verbs as support

    now = now or timezone.now()
    steps = [
        lambda: subscriptions.sweep(now),
        lambda: warn_of_expiry(now, EXPIRY_WARNING),
        lambda: delete_expired_copies(now),
        lambda: remove_abandoned_creations(now),
        # Hourly: it lists every engine's databases (a folder of files, a server's catalogue).
        lambda: remove_abandoned_builds(now) if hourly("builds", now) else None,
        lambda: store.remove_abandoned(now),
        lambda: members.purge_expired(now),
        lambda: upgrade.sweep(now),
        lambda: domains.sweep(now),
        lambda: support.retry_mails(now),
        lambda: due.claim(now),
        lambda: activity.purge(now),
    ]
    # One step that fails (a server down, a database that cannot be dropped) stops no other.
    with activity.channel(activity.Activity.Channel.SWEEP):
        for step in steps:
            try:
                step()
            except Exception:
                logger.exception("A step of the sweep failed; it runs again at the next sweep")


# One pass at a time across all workers: the lock in the shared cache lasts this long at most
# (a pass takes milliseconds to seconds: the work itself is tasks), and the pass that holds it
# gives it back when it ends. The next pass starts INTERVAL_SECONDS after the last one began.
LOCK = "tenantry:sweep"
LOCK_SECONDS = 600
LAST = "tenantry:sweep-last"


def sweep_once() -> bool:
    """The sweep, if no other worker runs it and its time has come; whether it ran."""
    token = secrets.token_hex(8)
    if not cache.add(LOCK, token, timeout=LOCK_SECONDS):
        return False
    try:
        last = cache.get(LAST)
        now = timezone.now()
        if last is not None and now - last < timedelta(seconds=INTERVAL_SECONDS - 1):
            return False
        cache.set(LAST, now, timeout=None)
        sweep(now)
        return True
    finally:
        if cache.get(LOCK) == token:  # not another's, taken once this one's time ran out
            cache.delete(LOCK)


def hourly(step: str, now: datetime) -> bool:
    """Whether a step that needs no more than an hour's precision runs in this pass."""
    key = f"tenantry:sweep-{step}"
    last = cache.get(key)
    if last is not None and last <= now < last + timedelta(hours=1):
        return False
    cache.set(key, now, timeout=None)
    return True


def run_periodically() -> None:
    """The loop beside each worker: it takes over dead workers' operations as soon as they
    go quiet, and runs the sweep once a minute across all workers."""
    from tenantry.operations.tasks import recover

    tick = max(1.0, min(INTERVAL_SECONDS, settings.OPERATION_STALE_SECONDS / 2))
    while True:
        close_old_connections()
        try:
            recover()
            sweep_once()
        except Exception:
            logger.exception("The sweep failed; it runs again soon")
        threading.Event().wait(tick)


def start_sweeper() -> threading.Thread:
    thread = threading.Thread(target=run_periodically, name="tenantry-sweep", daemon=True)
    thread.start()
    return thread
