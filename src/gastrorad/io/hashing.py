"""SHA-256 of files (the run's stage manifest, the bundle's hash list) and of gastrorad's own code (stage cache keys)."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path


def file_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def code_hash(*subpackages: str) -> str:
    """SHA-256 over the source of gastrorad (every .py file, by relative path), or of the named
    subpackages only (``code_hash("preprocess", "io")``).

    Part of every stage's cache key and of the per-image caches, so changed code never serves a
    stale result, even when the version number did not move (editable/developer installs).
    """
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    files = [f for sub in subpackages for f in (root / sub).rglob("*.py")] if subpackages else root.rglob("*.py")
    for p in sorted(files):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()
