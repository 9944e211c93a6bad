"""SQLite: one file per database under the data dir. The embedded default."""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from django.conf import settings

from tenantry.engines.base import TEMPLATE_PREFIX, Engine, EngineError

# Dumps and loads flow through pieces of this size.
CHUNK = 1024 * 1024
# Writers wait this long for a lock (a duplicate holds one while it copies) before failing.
BUSY_TIMEOUT_MS = 60_000
# While held() (a restore over the database, minutes long), writers give up sooner: they would
# only wait to fail.
HELD_TIMEOUT_MS = 2_000


# What a dump being loaded may not do: reach other files (ATTACH, VACUUM INTO), change how
# SQLite reads the file (PRAGMA, but foreign_keys), or compute anything (SELECT, functions,
# recursive queries): a dump is tables and literal rows, and a query that never ends, or a
# zeroblob() of gigabytes, would hold the worker or fill the disk.
_DENIED = {
    sqlite3.SQLITE_ATTACH,
    sqlite3.SQLITE_DETACH,
    sqlite3.SQLITE_CREATE_VTABLE,
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_FUNCTION,
    sqlite3.SQLITE_RECURSIVE,
}


def _only_inside(action: int, arg1: str | None, arg2: str | None, *_: Any) -> int:
    if action in _DENIED or (action == sqlite3.SQLITE_PRAGMA and arg1 != "foreign_keys"):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _run_script(db: sqlite3.Connection, text: io.TextIOBase) -> None:
    """Run an SQL dump statement by statement, a thousand to a transaction (the dump's own
    BEGIN and COMMIT are left out). Read in pieces of at most a chunk; a statement can only
    end where a piece ends with a semicolon, so only there is it checked whole."""
    statement, batch = "", []
    while piece := text.readline(CHUNK):
        statement += piece
        if not piece.rstrip().endswith(";") or not sqlite3.complete_statement(statement):
            continue
        if statement.strip() not in ("BEGIN TRANSACTION;", "COMMIT;"):
            batch.append(statement)
        statement = ""
        if len(batch) >= 1000:
            db.executescript("BEGIN;" + "".join(batch) + "COMMIT;")
            batch.clear()
    if statement.strip():
        raise EngineError("The SQLite dump ends in the middle of a statement.")
    db.executescript("BEGIN;" + "".join(batch) + "COMMIT;")


class SQLiteEngine(Engine):
    kind = "sqlite"

    def __init__(self, root: Path | None = None) -> None:
        super().__init__()
        self.root = root or Path(settings.DATA_DIR) / "tenants"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, physical: str) -> Path:
        return self.root / f"{physical}.sqlite3"

    def _uri(self, physical: str, mode: str) -> str:
        return self.path(physical).as_uri() + f"?mode={mode}"

    def _held_mark(self, physical: str) -> Path:
        return self.root / f"{physical}.held"

    def django_settings(self, physical: str) -> dict[str, Any]:
        held = self._held_mark(physical).exists()
        timeout = HELD_TIMEOUT_MS if held else BUSY_TIMEOUT_MS
        return {
            "ENGINE": "django.db.backends.sqlite3",
            # Read-write, never create: a request for a database whose file is gone must
            # fail, not leave an empty file behind.
            "NAME": self._uri(physical, "rw"),
            "OPTIONS": {
                "init_command": f"PRAGMA journal_mode=WAL; PRAGMA busy_timeout={timeout};",
                "transaction_mode": "IMMEDIATE",
            },
        }

    def exists(self, physical: str) -> bool:
        return self.path(physical).exists()

    def _create_empty(self, physical: str) -> None:
        sqlite3.connect(self.path(physical)).close()

    def has_template(self, release: str) -> bool:
        return self.exists(self.template_name(release))

    def _publish_template(self, physical: str, release: str) -> None:
        # One self-contained file (no WAL beside it), so a create is a plain file copy.
        with sqlite3.connect(self.path(physical)) as db:
            db.execute("PRAGMA journal_mode=DELETE")
        os.replace(self.path(physical), self.path(self.template_name(release)))

    def create(self, physical: str, release: str) -> int:
        self.prepare_template(release)
        self._copy_in(self.path(self.template_name(release)), None, physical)
        return self.size(physical)

    def clone(self, source: str, target: str) -> None:
        # The write lock holds writers back (they wait, they do not fail) and keeps the file
        # and its WAL still while both are copied.
        with self._write_lock(source):
            src = self.path(source)
            wal = Path(f"{src}-wal")
            self._copy_in(src, wal if wal.exists() else None, target)

    @contextmanager
    def held(self, physical: str) -> Iterator[None]:
        """The write lock, taken and kept: readers go on, writers wait HELD_TIMEOUT_MS, then
        fail (a mark beside the file tells the connections opened meanwhile)."""
        self._held_mark(physical).touch()
        try:
            with self._write_lock(physical):
                yield
        finally:
            self.release(physical)

    def release(self, physical: str) -> None:
        self._held_mark(physical).unlink(missing_ok=True)  # the lock went with the process

    @contextmanager
    def _write_lock(self, physical: str) -> Iterator[None]:
        """The write lock, taken and kept: readers go on, writers wait (BUSY_TIMEOUT_MS)."""
        db = sqlite3.connect(
            self.path(physical), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
        )
        try:
            db.execute("BEGIN IMMEDIATE")
            yield
            db.execute("ROLLBACK")
        finally:
            db.close()

    def _templates(self) -> list[str]:
        return [path.stem for path in self.root.glob(f"{TEMPLATE_PREFIX}*.sqlite3")]

    def write_was_held(self, error: Exception) -> bool:
        # A writer waited for the lock that held() or a duplicate keeps.
        cause = error.__cause__
        return isinstance(cause, sqlite3.OperationalError) and str(cause) == "database is locked"

    def _copy_in(self, main: Path, wal: Path | None, target: str) -> None:
        # Copied under a temporary name and renamed: a crash never leaves a half file in place.
        final = self.path(target)
        partial = final.with_suffix(".partial")
        if wal is not None:
            shutil.copyfile(wal, f"{final}-wal")
        shutil.copyfile(main, partial)
        os.replace(partial, final)

    def drop(self, physical: str) -> None:
        self.disconnect(physical)
        path = self.path(physical)
        for leftover in (
            path,
            Path(f"{path}-wal"),
            Path(f"{path}-shm"),
            path.with_suffix(".partial"),
            self._held_mark(physical),
        ):
            leftover.unlink(missing_ok=True)

    dump_format = "sqlite-sql"

    def dump(self, physical: str) -> Iterator[bytes]:
        db = sqlite3.connect(self.path(physical), timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            # One read transaction: a snapshot, while writers go on in the WAL.
            db.execute("BEGIN")
            chunk: list[str] = []
            for line in db.iterdump():
                chunk.append(line + "\n")
                if len(chunk) >= 1000:
                    yield "".join(chunk).encode()
                    chunk.clear()
            yield "".join(chunk).encode()
        finally:
            db.close()

    def load(self, physical: str, dump: IO[bytes]) -> None:
        self.drop(physical)  # what a load cut short may have left
        final = self.path(physical)
        partial = final.with_suffix(".partial")
        db = sqlite3.connect(partial, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            db.set_authorizer(_only_inside)
            # newline="": the carriage returns inside values stay as they are.
            _run_script(db, io.TextIOWrapper(dump, encoding="utf-8", newline=""))
        except BaseException as error:
            db.close()
            partial.unlink(missing_ok=True)
            if isinstance(error, sqlite3.Error | UnicodeDecodeError):
                raise EngineError(f"The SQLite dump could not be loaded: {error}.") from None
            raise
        db.close()
        os.replace(partial, final)

    def schema(self, physical: str) -> str:
        with sqlite3.connect(self._uri(physical, "ro"), uri=True) as db:
            rows = db.execute(
                "SELECT type, name, tbl_name, sql FROM sqlite_master "
                "WHERE substr(name, 1, 7) != 'sqlite_' ORDER BY type, name"
            ).fetchall()
        db.close()
        return "\n".join(repr(row) for row in rows)

    def size(self, physical: str) -> int:
        path = self.path(physical)
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
