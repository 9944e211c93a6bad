"""SQLite: one file per database under the data dir. The embedded default."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from django.conf import settings

from tenantry.engines.base import (
    LOAD_BYTES_PER_SECOND,
    LOAD_SECONDS,
    TEMPLATE_PREFIX,
    Engine,
    EngineError,
)

# Dumps and loads flow through pieces of this size.
CHUNK = 1024 * 1024
# A statement of a dump may be this long at most: a workspace row is what one form can post
# (Django's 2.5 MB DATA_UPLOAD_MAX_MEMORY_SIZE), doubled at most by quoting.
STATEMENT_MAX = 16 * 1024 * 1024
# A load's transaction is a thousand statements, or fewer that add up to this many bytes.
BATCH_BYTES = 4 * 1024 * 1024
TOO_LONG = (
    "The SQLite dump could not be loaded: it has a statement longer than "
    f"{STATEMENT_MAX // 1024 // 1024} MB, more than any Tenantry database holds."
)
OUTLASTED = (
    "The SQLite dump could not be loaded: it ran longer than a dump of its size needs, so it "
    "was stopped."
)
# The allowance is checked every this many steps of SQLite's virtual machine (microseconds).
PROGRESS_STEPS = 1000
# Writers wait this long for a lock (a duplicate holds one while it copies) before failing.
BUSY_TIMEOUT_MS = 60_000
# While held() (a restore over the database, minutes long), writers give up sooner: they would
# only wait to fail.
HELD_TIMEOUT_MS = 2_000


# What a dump being loaded may not do: reach other files (ATTACH, VACUUM INTO), change how
# SQLite reads the file (PRAGMA, but foreign_keys), or compute anything (SELECT, functions,
# recursive queries, UPDATE): a dump is tables and literal rows, and a query that never ends,
# or a zeroblob() or `x || x` of gigabytes, would hold the worker or fill the disk.
_DENIED = {
    sqlite3.SQLITE_ATTACH,
    sqlite3.SQLITE_DETACH,
    sqlite3.SQLITE_CREATE_VTABLE,
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_FUNCTION,
    sqlite3.SQLITE_RECURSIVE,
}
# A loaded file may grow to this, and four bytes more for each byte of dump read: more than
# rows take (their SQL text is longer than their pages), far less than what triggers of a
# crafted dump could make of each row.
FILE_MARGIN = 64 * 1024 * 1024
TOO_LARGE = (
    "The SQLite dump could not be loaded: the database grew far larger than its dump, or the "
    "disk is full."
)


def _only_inside(action: int, arg1: str | None, arg2: str | None, *_: Any) -> int:
    if (
        action in _DENIED
        or (action == sqlite3.SQLITE_PRAGMA and arg1 != "foreign_keys")
        # A dump updates nothing: only SQLite itself does, in its schema, as tables are made.
        or (action == sqlite3.SQLITE_UPDATE and arg1 not in ("sqlite_master", "sqlite_temp_master"))
    ):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


# What sqlite3_complete() (SQLite's complete.c) tells apart, in the order of its table: its
# tokens, then, for each of its states, the state each token leads to. A statement ends where
# a semicolon leads back to START; inside CREATE [TEMP] TRIGGER only at "; END ;".
_SEMI, _SPACE, _OTHER, _EXPLAIN, _CREATE, _TEMP, _TRIGGER, _END = range(8)
_START, _NORMAL, _EXPLAINED, _CREATED, _BODY, _BODY_SEMI, _BODY_END = range(1, 8)
_NEXT = (
    (1, 0, 2, 3, 4, 2, 2, 2),  # 0 INVALID
    (1, 1, 2, 3, 4, 2, 2, 2),  # 1 START
    (1, 2, 2, 2, 2, 2, 2, 2),  # 2 NORMAL
    (1, 3, 3, 2, 4, 2, 2, 2),  # 3 EXPLAIN
    (1, 4, 2, 2, 2, 4, 5, 2),  # 4 CREATE
    (6, 5, 5, 5, 5, 5, 5, 5),  # 5 TRIGGER
    (6, 6, 5, 5, 5, 5, 5, 7),  # 6 SEMI (in a trigger)
    (1, 7, 5, 5, 5, 5, 5, 5),  # 7 END (in a trigger)
)
_KEYWORDS = {
    b"EXPLAIN": _EXPLAIN,
    b"CREATE": _CREATE,
    b"TEMP": _TEMP,
    b"TEMPORARY": _TEMP,
    b"TRIGGER": _TRIGGER,
    b"END": _END,
}
_LONGEST_KEYWORD = 9
_ID = rb"0-9A-Za-z_$\x80-\xff"  # SQLite's IdChar(): UTF-8 bytes are part of words
_WORD = re.compile(rb"[%s]+" % _ID)
# What leaves each state as it is (comments are whitespace), passed over in one match while
# it closes inside the piece; the byte where a match stops is read on its own. A string, a
# quoted identifier, an operator and a word count as OTHER.
_BLANK = rb"[ \t\n\f\r]++|--[^\n]*+\n|/\*.*?\*/"
_QUOTED = rb"""'[^']*+'|"[^"]*+"|`[^`]*+`|\[[^\]]*+\]"""
_OPERATOR = rb"""[^ \t\n\f\r;'"`\[/%s-]|-(?=[^-])|/(?=[^*])""" % _ID
_NOT_KEYWORD = rb"(?!(?:explain|create|temp|temporary|trigger|end)[^%s])[%s]++(?=[^%s])" % (
    (_ID,) * 3
)
_BUT_SEMICOLON = rb"(?:[^;'\"`\[/-]++|%s|%s|%s)*+" % (_BLANK, _QUOTED, _OPERATOR)
_STAYS = {
    # Empty statements too: the last semicolon of the run ends them all.
    _START: rb"(?:%s|(;))*+" % _BLANK,
    _NORMAL: _BUT_SEMICOLON,
    _EXPLAINED: rb"(?:%s|%s|%s|%s)*+" % (_BLANK, _QUOTED, _OPERATOR, _NOT_KEYWORD),
    _CREATED: rb"(?:%s)*+" % _BLANK,
    _BODY: _BUT_SEMICOLON,
    _BODY_SEMI: rb"(?:%s|;)*+" % _BLANK,
    _BODY_END: rb"(?:%s)*+" % _BLANK,
}
_PASSED_OVER = {
    state: re.compile(pattern, re.DOTALL | re.IGNORECASE) for state, pattern in _STAYS.items()
}
_CLOSING = {b"'": b"'", b'"': b'"', b"`": b"`", b"[": b"]"}


class _Statements:
    """Where the statements of an SQL text end, found as sqlite3_complete() would, piece by
    piece: the state (a string, identifier or comment left open, a word cut in two) is kept
    from one piece to the next, so each byte is read once, whatever the pieces. A quote doubled
    inside a string ('') reads as a string closed and another opened: the same to the end."""

    def __init__(self) -> None:
        self.state = _START
        self.inside = b""  # what closes the string, identifier or comment open: ', ], \n, */
        self.pending = b""  # a last byte that may start a comment (- or /) or end one (*)
        self.word: bytes | None = None  # the start of a word the piece cut, if it matters

    def ends(self, piece: bytes) -> list[int]:
        """The offsets just past each semicolon that ends a statement in `piece`."""
        found: list[int] = []
        at = self._carried(piece)
        size = len(piece)
        while at < size:
            if self.inside:
                close = piece.find(self.inside, at)
                if close == -1:
                    if self.inside == b"*/" and piece.endswith(b"*") and size - 1 >= at:
                        self.pending = b"*"
                    break
                at, self.inside = close + len(self.inside), b""
                continue
            stay = _PASSED_OVER[self.state].match(piece, at)
            assert stay is not None  # it matches, if only nothing
            at = stay.end()
            if self.state == _START and stay.end(1) != -1:
                found.append(stay.end(1))
            if at == size:
                break
            byte = piece[at : at + 1]
            if byte == b";":
                at += 1
                self.state = _NEXT[self.state][_SEMI]
                if self.state == _START:
                    found.append(at)
            elif byte in _CLOSING:
                self.inside = _CLOSING[byte]
                self.state = _NEXT[self.state][_OTHER]
                at += 1
            elif byte in (b"-", b"/"):
                if at + 1 == size:
                    self.pending = byte
                    break
                at = self._comment_or_other(byte, piece[at + 1 : at + 2], at + 1)
            elif word := _WORD.match(piece, at):
                at = word.end()
                if at == size:  # it may go on in the next piece
                    self.word = word[0][: _LONGEST_KEYWORD + 1]
                    break
                self._after_word(word[0])
            else:
                self.state = _NEXT[self.state][_OTHER]
                at += 1
        return found

    def _carried(self, piece: bytes) -> int:
        """Finish what the last piece left cut; where this piece's reading starts."""
        pending, self.pending = self.pending, b""
        if pending == b"*":
            if piece.startswith(b"/"):
                self.inside = b""
                return 1
            return 0
        if pending:
            return self._comment_or_other(pending, piece[:1], 0)
        if self.word is not None:
            more = _WORD.match(piece)
            at = more.end() if more else 0
            self.word = (self.word + piece[:at])[: _LONGEST_KEYWORD + 1]
            if at < len(piece):
                word, self.word = self.word, None
                self._after_word(word)
            return at
        return 0

    def _comment_or_other(self, byte: bytes, following: bytes, at: int) -> int:
        """After a - or / at `at` - 1: a comment opens (whitespace to sqlite3_complete), or
        the byte was an operator."""
        if byte + following in (b"--", b"/*"):
            self.inside = b"\n" if byte == b"-" else b"*/"
            return at + 1
        self.state = _NEXT[self.state][_OTHER]
        return at

    def _after_word(self, word: bytes) -> None:
        keyword = word.upper() if len(word) <= _LONGEST_KEYWORD else b""
        self.state = _NEXT[self.state][_KEYWORDS.get(keyword, _OTHER)]


class _Allowance:
    """How long a load may run: as a PostgreSQL load, LOAD_SECONDS, and a second more for each
    MB of dump read."""

    def __init__(self) -> None:
        self.deadline = time.monotonic() + LOAD_SECONDS
        self.bytes = 0

    def read(self, size: int) -> None:
        self.bytes += size
        self.deadline += size / LOAD_BYTES_PER_SECOND
        if self.outlasted():
            raise EngineError(OUTLASTED)

    def outlasted(self) -> bool:
        return time.monotonic() > self.deadline


def _run_script(db: sqlite3.Connection, dump: IO[bytes], allowance: _Allowance) -> None:
    """Run an SQL dump statement by statement, a thousand (or BATCH_BYTES) to a transaction;
    the dump's own BEGIN and COMMIT are left out. Read in pieces of a chunk, each byte once:
    no more than a statement (STATEMENT_MAX at most) and a batch are held at a time."""
    statements = _Statements()
    statement: list[bytes] = []  # the parts of the statement being read
    held = 0
    batch: list[bytes] = []
    batched = count = 0
    while piece := dump.read(CHUNK):
        allowance.read(len(piece))
        start = 0
        for end in statements.ends(piece):
            held = _hold(statement, held, piece[start:end])
            if not _dumps_own(statement, held):
                batch += statement
                batched, count = batched + held, count + 1
            statement, held, start = [], 0, end
            if count >= 1000 or batched >= BATCH_BYTES:
                _execute(db, batch, allowance)
                batch, batched, count = [], 0, 0
        held = _hold(statement, held, piece[start:])
    if any(part.strip() for part in statement):
        raise EngineError("The SQLite dump ends in the middle of a statement.")
    _execute(db, batch, allowance)


def _hold(statement: list[bytes], held: int, part: bytes) -> int:
    """Add a part to the statement being read; how long the statement is now. Refused once
    longer than STATEMENT_MAX, before it is held whole."""
    held += len(part)
    if held > STATEMENT_MAX:
        raise EngineError(TOO_LONG)
    if part:
        statement.append(part)
    return held


def _dumps_own(statement: list[bytes], held: int) -> bool:
    """Whether a statement is the dump's own BEGIN or COMMIT (the load makes its own)."""
    return held < 64 and b"".join(statement).strip() in (b"BEGIN TRANSACTION;", b"COMMIT;")


def _execute(db: sqlite3.Connection, batch: list[bytes], allowance: _Allowance) -> None:
    db.set_authorizer(None)  # the load's own pragma
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {(FILE_MARGIN + 4 * allowance.bytes) // page_size}")
    db.set_authorizer(_only_inside)
    db.executescript(b"".join([b"BEGIN;", *batch, b"COMMIT;"]).decode())


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
            with self._write_lock(physical) as lock:
                yield
                if not self.exists(physical):  # dropped while held (a restore's swap)
                    _refuse_writes(lock)
        finally:
            self.release(physical)

    def release(self, physical: str) -> None:
        self._held_mark(physical).unlink(missing_ok=True)  # the lock went with the process

    @contextmanager
    def _write_lock(self, physical: str) -> Iterator[sqlite3.Connection]:
        """The write lock, taken and kept: readers go on, writers wait (BUSY_TIMEOUT_MS)."""
        db = sqlite3.connect(
            self.path(physical), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
        )
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            if db.in_transaction:
                db.execute("ROLLBACK")
        finally:
            db.close()

    def _templates(self) -> list[str]:
        # Read as a stream: the folder holds every database's file too.
        with os.scandir(self.root) as entries:
            return [
                entry.name.removesuffix(".sqlite3")
                for entry in entries
                if entry.name.startswith(TEMPLATE_PREFIX) and entry.name.endswith(".sqlite3")
            ]

    def write_was_held(self, error: Exception) -> bool:
        # A writer waited for the lock that held() or a duplicate keeps, or wrote to a file
        # dropped while held (_refuse_writes).
        cause = error.__cause__
        return (
            isinstance(cause, sqlite3.OperationalError) and str(cause) == "database is locked"
        ) or (isinstance(cause, sqlite3.IntegrityError) and str(cause) == DROPPED)

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
        allowance = _Allowance()
        try:
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            db.set_authorizer(_only_inside)
            # No value longer than a statement of the dump can be: `x || x` cannot double one
            # until it fills the memory.
            db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, STATEMENT_MAX)
            # A statement running past the allowance is interrupted (an OperationalError).
            db.set_progress_handler(allowance.outlasted, PROGRESS_STEPS)
            _run_script(db, dump, allowance)
        except BaseException as error:
            db.close()
            partial.unlink(missing_ok=True)
            if isinstance(error, sqlite3.Error) and allowance.outlasted():
                raise EngineError(OUTLASTED) from None
            if getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                raise EngineError(TOO_LARGE) from None
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


DROPPED = "the database was dropped while held"


def _refuse_writes(lock: sqlite3.Connection) -> None:
    """The held file is dropped, but a session opened before the hold began (its busy timeout
    is long) may still be waiting for the lock: let go, it would write into the dropped file,
    and the write would be lost with it. Every table refuses writes instead, as the hold did."""
    tables = lock.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, 7) != 'sqlite_'"
    ).fetchall()
    for (table,) in tables:
        quoted = '"' + table.replace('"', '""') + '"'
        for event in ("INSERT", "UPDATE", "DELETE"):
            trigger = '"' + f"dropped_{table}_{event}".replace('"', '""') + '"'
            lock.execute(
                f"CREATE TRIGGER {trigger} BEFORE {event} ON {quoted} "
                f"BEGIN SELECT RAISE(ABORT, '{DROPPED}'); END"
            )
    lock.execute("COMMIT")
