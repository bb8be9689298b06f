"""SHA-256 of files, streamed: the run's stage manifest and the bundle's hash list use it."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
