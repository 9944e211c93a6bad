"""The interface every engine implements, and what they share: tenant connections, templates."""

from __future__ import annotations

import re
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import IO, Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.executor import MigrationExecutor
from django.db.utils import load_backend
from django.utils.connection import ConnectionDoesNotExist

from tenantry.workspace.releases import RELEASES
from tenantry.workspace.routers import TENANT_PREFIX

_templates_lock = threading.Lock()
TEMPLATE_PREFIX = "tenantry_template_"
# A template being built: the template's name, then when the build started.
BUILD = re.compile(re.escape(TEMPLATE_PREFIX) + r"\w+_b(\d+)_[0-9a-f]+")

# A restore's load may take this long, plus a second for each MB of its dump: far more than a
# real dump needs (they load at tens of MB a second), and all a crafted one may hold a worker.
LOAD_SECONDS = 60
LOAD_BYTES_PER_SECOND = 1024 * 1024


class EngineError(Exception):
    """A storage operation failed; the message is a sentence for the person who asked."""


class DatabaseHeld(EngineError):
    """A write refused while a copy, move or restore holds the database (see held())."""


class Engine(ABC):
    """Tenant storage: one physical database per tenant, named by a stable identifier."""

    kind: str

    def __init__(self) -> None:
        # Releases whose template is known to exist: a create asks the server only once.
        self._ready_templates: set[str] = set()

    @abstractmethod
    def django_settings(self, physical: str) -> dict[str, Any]:
        """The DATABASES entry through which Django reaches this physical database."""

    @abstractmethod
    def exists(self, physical: str) -> bool: ...

    @abstractmethod
    def _create_empty(self, physical: str) -> None:
        """An empty database, to migrate into a template."""

    @abstractmethod
    def _publish_template(self, physical: str, release: str) -> None:
        """Make a freshly migrated database the template of `release`."""

    @abstractmethod
    def has_template(self, release: str) -> bool: ...

    @abstractmethod
    def create(self, physical: str, release: str) -> int:
        """A new database at `release`, copied from that release's template; its bytes on
        disk (measured on the way, so a create asks the server once)."""

    @abstractmethod
    def clone(self, source: str, target: str) -> None:
        """An exact copy of `source`. Requests to `source` wait meanwhile; none fails."""

    @abstractmethod
    def drop(self, physical: str) -> None:
        """Remove the database if it exists (idempotent)."""

    @abstractmethod
    def size(self, physical: str) -> int:
        """Bytes on disk."""

    dump_format: str

    @abstractmethod
    def dump(self, physical: str) -> Iterator[bytes]:
        """A consistent SQL dump of the database, streamed while it stays in use."""

    @abstractmethod
    def load(self, physical: str, dump: IO[bytes]) -> None:
        """A new database made from a dump of this engine's format (a restore), read as a
        stream. The dump may come from anyone: it cannot reach beyond the new database."""

    @abstractmethod
    def held(self, physical: str) -> AbstractContextManager[None]:
        """The database read but not written while the block runs (writers wait, or fail
        once they have waited too long)."""

    @abstractmethod
    def release(self, physical: str) -> None:
        """Lift what held() or clone() left on the database when the process holding it was
        killed (its block never ended). Idempotent; a missing database is left alone."""

    @abstractmethod
    def write_was_held(self, error: Exception) -> bool:
        """Whether a database error is a write refused because the database is held."""

    @abstractmethod
    def schema(self, physical: str) -> str:
        """The database's schema as text (tables, indexes, triggers, functions...): a restored
        database must have exactly its release template's."""

    def connect(self, physical: str) -> str:
        """The Django alias of a physical database for this thread, opened on first use.

        Tenant connections are made per thread and closed by whoever opened them (see
        workspace.tenant.using): there may be thousands of databases, never all in settings.
        Their sessions may outlive them (disconnect's `keep`), shared by the process's threads.
        """
        alias = TENANT_PREFIX + self.key(physical)
        try:
            connections[alias]
        except ConnectionDoesNotExist:
            config = connections.configure_settings(
                {"default": {}, alias: self.django_settings(physical)}
            )[alias]
            connections[alias] = load_backend(config["ENGINE"]).DatabaseWrapper(config, alias)
        return alias

    def disconnect(self, physical: str, *, keep: bool = False) -> None:
        """Close this thread's connection to the database.

        `keep`: a request is done with it, and its session may serve a later one (the
        PostgreSQL engine keeps it: see backends/postgresql/pool.py). Without it the session
        ends, as it must before the database is copied, moved or dropped.
        """
        alias = TENANT_PREFIX + self.key(physical)
        try:
            connection = connections[alias]
        except ConnectionDoesNotExist:
            return
        try:
            if keep:
                self._keep(connection)
            else:
                connection.close()
        finally:
            del connections[alias]

    def _keep(self, connection: BaseDatabaseWrapper) -> None:
        """Close a connection whose session may serve a later request: this engine keeps none."""
        connection.close()

    def key(self, physical: str) -> str:
        return f"{self.kind}:{physical}"

    @abstractmethod
    def _templates(self) -> list[str]:
        """The physical names of the templates on this engine, and of those being built."""

    def remove_abandoned_builds(self, before: float) -> None:
        """Template builds started before `before` (a Unix time): their process died."""
        for name in self._templates():
            started = BUILD.fullmatch(name)
            if started and int(started[1]) < before:
                self.drop(name)

    def template_name(self, release: str) -> str:
        return TEMPLATE_PREFIX + release.replace(".", "_")

    def prepare_template(self, release: str) -> None:
        """Build the template of `release` once: migrated here, then cloned by every create."""
        if release in self._ready_templates:
            return
        with _templates_lock:
            if self.has_template(release):
                self._ready_templates.add(release)
                return
            # Its own name per builder (another process may be building the same template),
            # with the time it started: the sweep removes builds whose process died.
            building = f"{self.template_name(release)}_b{int(time.time())}_{secrets.token_hex(4)}"
            self._create_empty(building)
            alias = self.connect(building)
            MigrationExecutor(connections[alias]).migrate([("workspace", RELEASES[release])])
            self.disconnect(building)
            self._publish_template(building, release)
            self._ready_templates.add(release)
