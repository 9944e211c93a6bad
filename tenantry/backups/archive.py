"""The backup ZIP: manifest.json, the dump and filestore/, streamed as it is made.

Nothing is copied to a temporary place first: each member is read, hashed and compressed
chunk by chunk, and the bytes leave as soon as zipfile writes them. The manifest, with the size
and SHA-256 of every member, comes last, once they are known.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import IO, Any

from tenantry.databases.models import Database
from tenantry.engines import filestore
from tenantry.engines.fleet import engine_for

FORMAT_VERSION = 1
CHUNK = 1024 * 1024


class _Outbox:
    """A write-only file for zipfile, emptied by the generator after each write."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


def members(database: Database) -> Iterator[tuple[str, Iterable[bytes]]]:
    yield "dump.sql", engine_for(database).dump(database.physical_name)
    root = filestore.root(database.physical_name)
    if root.exists():
        for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name[0] != "."):
            yield f"filestore/{path.relative_to(root)}", _read(path)


def _read(path: Any) -> Iterator[bytes]:
    with open(path, "rb") as f:
        yield from chunks(f)


def chunks(file: IO[bytes]) -> Iterator[bytes]:
    """A file's bytes, a chunk at a time."""
    while chunk := file.read(CHUNK):
        yield chunk


def stream(database: Database) -> Iterator[bytes]:
    """The ZIP of `database`, in pieces."""
    outbox = _Outbox()
    files: dict[str, dict[str, Any]] = {}
    with zipfile.ZipFile(outbox, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:  # type: ignore[call-overload]
        for name, chunks in members(database):
            digest, size = hashlib.sha256(), 0
            with archive.open(name, "w", force_zip64=True) as member:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    member.write(chunk)
                    if outbox.chunks:
                        yield outbox.take()
            files[name] = {"size": size, "sha256": digest.hexdigest()}
        manifest = {
            "format": FORMAT_VERSION,
            "database": database.name,
            "uuid": str(database.uuid),
            "release": database.release,
            "engine": database.engine,
            "dump_format": engine_for(database).dump_format,
            "created_at": datetime.now(UTC).isoformat(),
            "files": files,
        }
        archive.writestr("manifest.json", json.dumps(manifest, indent=2))
    yield outbox.take()


def filename(database: Database) -> str:
    return f"{database.name}_{datetime.now(UTC):%Y-%m-%d_%H%M%S}.zip"
