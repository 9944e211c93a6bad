"""PostgreSQL: tenant databases on the servers of the fleet."""

from __future__ import annotations

import glob
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import psycopg
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import sql

from tenantry.engines.backends.postgresql import pool
from tenantry.engines.backends.postgresql.base import DatabaseWrapper
from tenantry.engines.base import (
    LOAD_BYTES_PER_SECOND,
    LOAD_SECONDS,
    TEMPLATE_PREFIX,
    Engine,
    EngineError,
)
from tenantry.workspace.routers import TENANT_PREFIX


def pg_bin(program: str) -> str:
    """A PostgreSQL client program: the newest installed version's, else the one on PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}"), key=_version)
    path = found[-1] if found else shutil.which(program)
    if not path:
        raise EngineError(
            f"{program} is not installed (Debian: apt-get install postgresql-client)."
        )
    return path


def _version(path: str) -> int:
    part = path.split("/")[4]
    return int(part) if part.isdigit() else 0


# Dumps and loads flow through pieces of this size.
CHUNK = 1024 * 1024

# How long a clone, a move or a drop lets the requests in flight finish before ending their
# sessions (parked sessions, which serve none, are ended at once).
DRAIN_SECONDS = 10
# A request waits this long for a lock (an upgrade holds its tables' for its whole transaction)
# before it fails, with the "being upgraded" page (workspace.tenant), instead of hanging.
LOCK_TIMEOUT = "5s"

# Admin connections are kept open between uses, at most this many a server in each process: a
# new one costs the server a backend (a fork and a few ms of CPU), and every create needs one.
# One idle for longer is not trusted (a firewall may have dropped it silently): it is closed.
KEEP_IDLE = 4
KEEP_SECONDS = 60.0
_idle: dict[str, list[tuple[psycopg.Connection[Any], float]]] = {}
_idle_lock = threading.Lock()


def _forget_kept_in_child() -> None:
    """A forked child must not talk on its parent's sockets (nor close them): it starts with
    none, and with a lock no other thread of the parent can hold."""
    global _idle_lock
    _idle.clear()
    _idle_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_kept_in_child)


class PostgreSQLEngine(Engine):
    kind = "postgresql"

    def __init__(self, url: str, name: str = "") -> None:
        super().__init__()
        parts = urlsplit(url)
        self.url = url
        self.name = name or f"{parts.hostname}:{parts.port or 5432}"
        self.params: dict[str, Any] = {
            "host": parts.hostname or "localhost",
            "port": parts.port or 5432,
            "user": unquote(parts.username or ""),
            "password": unquote(parts.password or ""),
        }
        self.maintenance_db = parts.path.lstrip("/") or "postgres"

    def key(self, physical: str) -> str:
        return f"{self.kind}:{self.name}:{physical}"

    def disconnect(self, physical: str, *, keep: bool = False) -> None:
        super().disconnect(physical, keep=keep)
        if not keep:  # the database is to be copied, moved or dropped: no session of it stays
            pool.discard(TENANT_PREFIX + self.key(physical))

    def _keep(self, connection: BaseDatabaseWrapper) -> None:
        if isinstance(connection, DatabaseWrapper):
            connection.park()
        else:
            connection.close()

    def django_settings(self, physical: str) -> dict[str, Any]:
        return {
            "ENGINE": "tenantry.engines.backends.postgresql",
            "NAME": physical,
            "USER": self.params["user"],
            "PASSWORD": self.params["password"],
            "HOST": self.params["host"],
            "PORT": self.params["port"],
            "OPTIONS": {"options": f"-c lock_timeout={LOCK_TIMEOUT}"},
        }

    @contextmanager
    def admin(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection to the maintenance database, where databases are made and dropped: a
        kept one if it still answers, else a new one. It is kept again afterwards, unless
        the block failed."""
        conn = self._kept_admin()
        if conn is None:
            try:
                conn = psycopg.connect(dbname=self.maintenance_db, autocommit=True, **self.params)
            except psycopg.OperationalError as e:
                reason = _reason(str(e), "no answer")
                raise EngineError(f"The PostgreSQL server {self.name} cannot be reached: {reason}")
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        with _idle_lock:
            kept = _idle.setdefault(self.url, [])
            if len(kept) < KEEP_IDLE:
                kept.append((conn, time.monotonic()))
                return
        conn.close()

    def _kept_admin(self) -> psycopg.Connection[Any] | None:
        """A kept admin connection to this server, recently used and still answering (the
        server may have restarted or ended it meanwhile), or None."""
        while True:
            with _idle_lock:
                kept = _idle.get(self.url)
                if not kept:
                    return None
                conn, since = kept.pop()
            if time.monotonic() - since < KEEP_SECONDS:
                try:
                    conn.execute("")
                    return conn
                except psycopg.Error:
                    pass
            conn.close()

    def exists(self, physical: str) -> bool:
        with self.admin() as db:
            row = db.execute("SELECT 1 FROM pg_database WHERE datname = %s", [physical]).fetchone()
        return row is not None

    def _create_empty(self, physical: str) -> None:
        with self.admin() as db:
            db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(physical)))

    def has_template(self, release: str) -> bool:
        return self.exists(self.template_name(release))

    def _publish_template(self, physical: str, release: str) -> None:
        try:
            with self.admin() as db:
                db.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(physical), sql.Identifier(self.template_name(release))
                    )
                )
        except psycopg.errors.DuplicateDatabase:
            self.drop(physical)  # another process published the same template first

    def create(self, physical: str, release: str) -> int:
        self.prepare_template(release)
        # WAL_LOG for the small template: FILE_COPY would checkpoint the whole server at
        # every create, slowing every tenant on it.
        return self._copy(self.template_name(release), physical, "WAL_LOG")

    def _copy(self, source: str, target: str, strategy: str = "FILE_COPY") -> int:
        """Copy a database on this server; the copy's size."""
        # FILE_COPY copies a large database at disk speed (measured 1.3-1.7x faster than
        # WAL_LOG at 1 GB), for two checkpoints.
        with self.admin() as db:
            db.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY {}").format(
                    sql.Identifier(target), sql.Identifier(source), sql.SQL(strategy)
                )
            )
            row = db.execute("SELECT pg_database_size(%s)", [target]).fetchone()
        return int(row[0]) if row else 0

    def clone(self, source: str, target: str) -> None:
        # A template must have no session open while it is copied.
        with self.closed(source):
            self._copy(source, target)

    def _end_sessions(self, db: psycopg.Connection[Any], physical: str) -> None:
        """Once new sessions are held back: end the parked ones at once (kept between
        requests, they serve none; see backends/postgresql/pool.py), and give those serving a
        request DRAIN_SECONDS to finish before ending them too."""
        parked = (
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
            "AND application_name = %s AND state = 'idle' AND pid <> pg_backend_pid()"
        )
        others = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        )
        deadline = time.monotonic() + DRAIN_SECONDS
        while True:
            # Each turn: a request that ends meanwhile parks its session.
            db.execute(parked, [physical, pool.PARKED])
            if not db.execute(others, [physical]).fetchone()[0]:  # type: ignore[index]
                return
            if time.monotonic() > deadline:
                db.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    [physical],
                )
            time.sleep(0.02)

    @contextmanager
    def closed(self, physical: str) -> Iterator[None]:
        """The database with no session open and new ones held back (they wait, see
        backends.postgresql), for as long as the block runs."""
        self.disconnect(physical)
        with self.admin() as db:
            name = sql.Identifier(physical)
            db.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name))
            try:
                self._end_sessions(db, physical)
                yield
            finally:
                db.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name))

    @contextmanager
    def read_only(self, physical: str) -> Iterator[None]:
        """New sessions may read but not write, and open ones are ended, while the block runs.

        Unlike closed(), this lets pg_dump in: a move reads the database while it is held.
        """
        self.disconnect(physical)
        with self.admin() as db:
            name = sql.Identifier(physical)
            db.execute(
                sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(name)
            )
            try:
                self._end_sessions(db, physical)
                yield
            finally:
                # Unless the block dropped it: a move drops the copy it leaves while it is
                # still read-only (a request that found it before the switch writes nothing).
                found = "SELECT 1 FROM pg_database WHERE datname = %s"
                if db.execute(found, [physical]).fetchone():
                    db.execute(
                        sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(
                            name
                        )
                    )

    def held(self, physical: str) -> AbstractContextManager[None]:
        return self.read_only(physical)

    def release(self, physical: str) -> None:
        with self.admin() as db:
            if db.execute("SELECT 1 FROM pg_database WHERE datname = %s", [physical]).fetchone():
                name = sql.Identifier(physical)
                db.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name))
                db.execute(
                    sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(name)
                )

    def write_was_held(self, error: Exception) -> bool:
        return isinstance(error.__cause__, psycopg.errors.ReadOnlySqlTransaction)

    def move(self, physical: str, to: PostgreSQLEngine) -> None:
        """Copy the database to another server, streamed from pg_dump into pg_restore.

        The caller holds it read-only meanwhile, points the record at the new server, then
        drops this copy.
        """
        to.drop(physical)
        to._create_empty(physical)
        dump = subprocess.Popen(
            [pg_bin("pg_dump"), "-Fc", "-Z0", *self._conninfo(physical)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self._env(),
        )  # fmt: skip
        restore = subprocess.run(
            [pg_bin("pg_restore"), "--no-owner", "--exit-on-error", *to._conninfo(physical)],
            stdin=dump.stdout, capture_output=True, env=to._env(),
        )  # fmt: skip
        _, dump_error = dump.communicate()
        if dump.returncode or restore.returncode:
            to.drop(physical)
            reason = _reason(dump_error or restore.stderr, "pg_dump or pg_restore stopped")
            raise EngineError(f"Moving the database failed: {reason}")

    dump_format = "postgresql-plain-sql"

    def dump(self, physical: str) -> Iterator[bytes]:
        """Plain SQL that psql loads into any server; pg_dump works from one snapshot."""
        command = [pg_bin("pg_dump"), "-Fp", "--no-owner", "--no-privileges"]
        process = subprocess.Popen(
            [*command, *self._conninfo(physical)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self._env(),
        )  # fmt: skip
        assert process.stdout is not None
        try:
            while chunk := process.stdout.read(CHUNK):
                yield chunk
            error = process.stderr.read() if process.stderr else b""
            if process.wait():
                raise EngineError(f"The dump failed: {_reason(error, 'pg_dump stopped')}")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    def load(self, physical: str, dump: IO[bytes]) -> None:
        """psql loads the plain SQL dump as a throwaway role that owns nothing but the new
        database (not as the server's own user), in psql's restricted mode (no \\! or other
        meta-command): a dump from anyone reaches nothing else on the server."""
        self.drop(physical)
        self._create_empty(physical)
        role, password = self._load_role(physical), secrets.token_urlsafe(24)
        with self.admin() as db:
            db.execute(
                sql.SQL(
                    "CREATE ROLE {} LOGIN PASSWORD {} NOSUPERUSER NOCREATEDB NOCREATEROLE"
                ).format(sql.Identifier(role), sql.Literal(password))
            )
            db.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                    sql.Identifier(physical), sql.Identifier(role)
                )
            )
        try:
            self._psql_as(role, password, physical, dump)
            self._take_back(physical, role)
        except BaseException:
            self.drop(physical)
            raise

    def _take_back(self, physical: str, role: str) -> None:
        """The loaded database back in the server user's hands, as the template made it: what
        the dump's owner could change on the database itself (template flag, connection
        limit, settings) is undone, its grants go, and so does the role."""
        names = {"db": sql.Identifier(physical), "role": sql.Identifier(role)}
        with self.admin() as db:
            db.execute(sql.SQL("ALTER DATABASE {db} OWNER TO CURRENT_USER").format(**names))
            db.execute(
                sql.SQL(
                    "ALTER DATABASE {db} IS_TEMPLATE false ALLOW_CONNECTIONS true "
                    "CONNECTION LIMIT -1"
                ).format(**names)
            )
            db.execute(sql.SQL("ALTER DATABASE {db} RESET ALL").format(**names))
        with psycopg.connect(autocommit=True, **{**self.params, "dbname": physical}) as db:
            db.execute(sql.SQL("REASSIGN OWNED BY {role} TO CURRENT_USER").format(**names))
            db.execute(sql.SQL("DROP OWNED BY {role}").format(**names))
        with self.admin() as db:
            db.execute(sql.SQL("DROP ROLE {role}").format(**names))

    def schema(self, physical: str) -> str:
        result = subprocess.run(
            # Privileges included: a grant to PUBLIC is a change of schema too.
            [pg_bin("pg_dump"), "--schema-only", "--no-owner", *self._conninfo(physical)],
            capture_output=True, env=self._env(),
        )  # fmt: skip
        if result.returncode:
            raise EngineError(f"Reading the schema failed: {result.stderr.decode().strip()}")
        # Comments and the dump's random restrict key differ from one dump to the next.
        lines = result.stdout.decode().splitlines()
        return "\n".join(
            line
            for line in lines
            if line and not line.startswith(("--", "\\restrict", "\\unrestrict"))
        )

    def _load_role(self, physical: str) -> str:
        """The role a restore loads as, named after the database: a drop removes it too."""
        return f"tenantry_load_{physical}"

    def _psql_as(self, role: str, password: str, physical: str, dump: IO[bytes]) -> None:
        key = secrets.token_hex(16)
        process = subprocess.Popen(
            [pg_bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", *self._conninfo(physical, role)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, "PGPASSWORD": password},
        )  # fmt: skip
        assert process.stdin is not None and process.stderr is not None
        errors: list[bytes] = []
        reader = threading.Thread(target=lambda: errors.append(process.stderr.read()))  # type: ignore[union-attr]
        reader.start()
        # A dump is SQL from anyone, and a query of it could run forever (a session may lift
        # its own statement_timeout): psql is stopped once the load outlasts its allowance.
        deadline = [time.monotonic() + LOAD_SECONDS]
        stopped, killed = threading.Event(), threading.Event()

        def watch() -> None:
            while not stopped.wait(0.5):
                if time.monotonic() > deadline[0]:
                    killed.set()
                    process.kill()
                    return

        threading.Thread(target=watch, daemon=True).start()
        try:
            process.stdin.write(f"\\restrict {key}\n".encode())
            # The dump's own restrict and unrestrict lines go: its key would lift ours. Read in
            # pieces of at most a chunk, so a line without end cannot fill the memory.
            own, at_line_start = b"", True
            while piece := dump.readline(CHUNK):
                line_start, at_line_start = at_line_start, piece.endswith(b"\n")
                if line_start and not own and piece.startswith(b"\\restrict "):
                    own = piece.split()[1]
                    continue
                if line_start and own and piece.strip() == b"\\unrestrict " + own:
                    continue
                process.stdin.write(piece)
                deadline[0] += len(piece) / LOAD_BYTES_PER_SECOND
            process.stdin.close()
        except BrokenPipeError:
            pass  # psql stopped at an error: its message says which
        finally:
            code = process.wait()
            stopped.set()
            reader.join()
        if killed.is_set():
            raise EngineError(
                "The PostgreSQL dump could not be loaded: it ran longer than a dump of its "
                "size needs, so it was stopped."
            )
        if code:
            reason = _reason(b"".join(errors), f"psql stopped ({code})")
            raise EngineError(f"The PostgreSQL dump could not be loaded: {reason}")

    def _conninfo(self, physical: str, user: str = "") -> list[str]:
        p = self.params
        return ["-h", p["host"], "-p", str(p["port"]), "-U", user or p["user"], "-d", physical]

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSWORD": self.params["password"]}

    def drop(self, physical: str) -> None:
        self.disconnect(physical)
        with self.admin() as db:
            name = sql.Identifier(physical)
            found = "SELECT datistemplate FROM pg_database WHERE datname = %s"
            row = db.execute(found, [physical]).fetchone()
            if row is not None:
                if row[0]:  # a restore cut short may leave it so
                    db.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(name))
                # The requests still reading it (the copy a move leaves) finish first; new ones
                # wait, then find it gone (workspace.views.page takes them where it went).
                db.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name))
                self._end_sessions(db, physical)
            db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
            # Left by a restore that stopped half way (it owned nothing else).
            db.execute(
                sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(self._load_role(physical)))
            )

    def _templates(self) -> list[str]:
        with self.admin() as db:
            query = "SELECT datname FROM pg_database WHERE starts_with(datname, %s)"
            rows = db.execute(query, [TEMPLATE_PREFIX]).fetchall()
        return [name for (name,) in rows]

    def size(self, physical: str) -> int:
        with self.admin() as db:
            row = db.execute("SELECT pg_database_size(%s)", [physical]).fetchone()
        return int(row[0]) if row else 0

    def sizes(self) -> dict[str, int]:
        """Every database on the server and its size, in one query (for placement and lists)."""
        with self.admin() as db:
            rows = db.execute(
                "SELECT datname, pg_database_size(datname) FROM pg_database "
                "WHERE NOT datistemplate AND datallowconn"
            ).fetchall()
        return {name: int(size) for name, size in rows}


def _reason(said: bytes | str, otherwise: str) -> str:
    """What a PostgreSQL tool or libpq said went wrong, in one line: its first error (the
    lines after it are details and hints, "Is the server running..."), without the tool's
    name."""
    text = said.decode(errors="replace") if isinstance(said, bytes) else said
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"\b(error|ERROR|FATAL|PANIC):", line)]
    line = " ".join((errors or lines or [otherwise])[0].split())
    return re.sub(r"^(pg_dump|pg_restore|psql)(:[^:]*:\d+)?: (error: )?", "", line)
