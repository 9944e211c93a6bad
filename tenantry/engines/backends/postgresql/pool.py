"""Tenant sessions kept between requests: a bounded pool per process, with an idle timeout.

A workspace request used to open a session (a new backend on the server: a fork, its
authentication, a few ms) and close it at its end. Now its end parks the session here, and the
next request to the same database, in any thread of the process, takes it back.

The pool holds raw psycopg connections, not Django's wrappers: a wrapper belongs to its thread
(Django's connections are per thread), a raw connection is used by one thread at a time, the
one that took it out of the pool under the lock, and handed to that thread's wrapper (see
base.DatabaseWrapper). psycopg_pool, or Django's OPTIONS["pool"], keeps a pool per database,
each with its threads and its lower bound of open connections: with thousands of databases,
that is thousands of pools and no bound on their sum. Here one list, of at most
settings.TENANT_CONNECTIONS sessions, holds those of every database: the one parked longest ago
goes first when it is full, and a session unused for IDLE_SECONDS is closed.

A parked session must never hold up, nor outlive, a hold on its database (engines.postgresql:
a clone closes the database, a move or a restore makes it read-only, and both end its
sessions). So a parked session says it is parked on the server (its application_name):
the hold ends such sessions at once, from whichever process, and waits only for the others.
Taking a session back clears that mark and looks at the database in the same statement: if a
hold began meanwhile, the session is closed instead (it may be ended at any moment, and one
opened before a read-only hold could still write). Either the take comes first, and the hold
then sees a session in use and waits for it, or the hold comes first, and the take sees it.
A session opened while the database was read-only is never parked: it would stay read-only
after the hold ends.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import psycopg
from django.conf import settings
from psycopg.pq import TransactionStatus

# What a parked session's application_name is, on the server (pg_stat_activity).
PARKED = "tenantry: parked"
# A session unused for this long is closed: each one is a backend the server keeps.
IDLE_SECONDS = 60.0

# Parking: the mark, and whether the session is read-only by default (opened during a hold).
_PARK = (
    "SELECT set_config('application_name', %s, false), "
    "current_setting('default_transaction_read_only')"
)
# Taking back: the mark cleared, and whether the database is closed (a clone) or read-only (a
# move, a restore) now: see engines.postgresql, closed() and read_only().
_TAKE = """
SELECT set_config('application_name', '', false),
       NOT datallowconn OR EXISTS (
           SELECT 1 FROM pg_db_role_setting
           WHERE setdatabase = pg_database.oid AND setrole = 0
             AND 'default_transaction_read_only=on' = ANY(setconfig)
       )
FROM pg_database WHERE datname = current_database()
"""

Key = tuple[str, ...]
_parked: list[tuple[Key, psycopg.Connection[Any], float]] = []  # the last parked last
_lock = threading.Lock()
_reaper: threading.Thread | None = None


def park(key: Key, connection: psycopg.Connection[Any]) -> bool:
    """Keep a session that a request is done with; False when it may not be kept (then its
    caller closes it)."""
    limit = settings.TENANT_CONNECTIONS
    if (
        limit <= 0
        or connection.closed
        or connection.broken
        or not connection.autocommit
        or connection.info.transaction_status != TransactionStatus.IDLE
    ):
        return False
    try:
        row = connection.execute(_PARK, [PARKED]).fetchone()
    except psycopg.Error:
        return False
    if row is None or row[1] == "on":
        return False
    with _lock:
        _parked.append((key, connection, time.monotonic()))
        evicted = _parked[: max(0, len(_parked) - limit)]
        del _parked[: len(evicted)]
        _start_reaper()
    for _, old, _ in evicted:
        old.close()
    return True


def take(key: Key) -> psycopg.Connection[Any] | None:
    """A parked session of this database that still answers and may serve, or None."""
    while True:
        with _lock:
            found = next((i for i in range(len(_parked) - 1, -1, -1) if _parked[i][0] == key), None)
            if found is None:
                return None
            _, connection, since = _parked.pop(found)
        if time.monotonic() - since < IDLE_SECONDS:
            try:
                row = connection.execute(_TAKE).fetchone()
            except psycopg.Error:  # the server ended it (a hold, a restart) or went away
                row = None
            if row is not None and not row[1]:
                return connection
        connection.close()


def discard(alias: str) -> None:
    """Close this process's parked sessions of a database (by its Django alias)."""
    with _lock:
        gone = [entry for entry in _parked if entry[0][0] == alias]
        _parked[:] = [entry for entry in _parked if entry[0][0] != alias]
    for _, connection, _ in gone:
        connection.close()


def discard_all() -> None:
    """Close every session this process keeps."""
    with _lock:
        gone = _parked[:]
        _parked.clear()
    for _, connection, _ in gone:
        connection.close()


def parked() -> int:
    with _lock:
        return len(_parked)


def _start_reaper() -> None:
    """Under the lock: the thread that closes idle sessions runs while some are parked."""
    global _reaper
    if _reaper is None or not _reaper.is_alive():
        _reaper = threading.Thread(target=_reap, name="tenantry-tenant-sessions", daemon=True)
        _reaper.start()


def _reap() -> None:
    global _reaper
    while True:
        now = time.monotonic()
        with _lock:
            expired = [entry for entry in _parked if now - entry[2] >= IDLE_SECONDS]
            _parked[:] = [entry for entry in _parked if now - entry[2] < IDLE_SECONDS]
            if not _parked and not expired:
                _reaper = None
                return
            first = min((entry[2] for entry in _parked), default=now)
        for _, connection, _ in expired:
            connection.close()
        # Until the oldest is due, but at least once a second: the timeout may be changed.
        time.sleep(min(1.0, max(0.01, first + IDLE_SECONDS - time.monotonic())))


def _forget_in_child() -> None:
    """A forked child must not talk on its parent's sockets (nor close them): it starts with
    none, with a lock no thread of the parent holds, and no reaper."""
    global _lock, _reaper
    _parked.clear()
    _lock = threading.Lock()
    _reaper = None


os.register_at_fork(after_in_child=_forget_in_child)
