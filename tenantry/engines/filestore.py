"""Each database's filestore: its attachments, stored by the SHA-256 of their content."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings

# The name of a file being written; it takes its final name once complete.
PARTIAL = ".partial-"
SHA256 = re.compile(r"[0-9a-f]{64}")


def root(physical: str) -> Path:
    return Path(settings.DATA_DIR) / "filestore" / physical


def path(physical: str, sha256: str) -> Path:
    """Where the file with this SHA-256 is. Anything else than a SHA-256 (a row a restored
    dump could hold: "../../secret_key") is no file of the filestore."""
    if not SHA256.fullmatch(sha256):
        raise FileNotFoundError(f"Not a filestore file: {sha256!r}")
    return root(physical) / sha256[:2] / sha256


def size(physical: str) -> int:
    """Bytes of the database's files."""
    return sum(f.stat().st_size for f in root(physical).glob("*/*") if f.is_file())


def store(physical: str, chunks: Iterable[bytes]) -> tuple[str, int]:
    """Write a file; return its SHA-256 and size. The same content is stored once."""
    base = root(physical)
    base.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    partial = base / f"{PARTIAL}{os.getpid()}-{id(chunks)}"
    try:
        with partial.open("wb") as f:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                f.write(chunk)
    except BaseException:  # an upload cut off; a killed process's is swept by age
        partial.unlink(missing_ok=True)
        raise
    final = path(physical, digest.hexdigest())
    final.parent.mkdir(exist_ok=True)
    os.replace(partial, final)
    return digest.hexdigest(), size


def copy(source: str, target: str) -> None:
    """Copy a filestore. Files never change once written, so hard links are an exact copy."""
    remove(target)
    if root(source).exists():
        shutil.copytree(root(source), root(target), copy_function=_link_or_copy)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def remove(physical: str) -> None:
    shutil.rmtree(root(physical), ignore_errors=True)
