"""The patch cache: one ``.npz`` per image instance, named by a hash of its inputs.

The key hashes the bytes of the image (every file of a DICOM folder), of the mask, the
box, and every preprocessing parameter, plus the patch format version. A second run
with the same inputs finds every file and does no work; changing one parameter or one
input file recomputes exactly the instances it affects.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from gastrorad.errors import InputError, Problem
from gastrorad.io.atomic import atomic_write
from gastrorad.io.hashing import code_hash
from gastrorad.io.images import split_reference

FORMAT_VERSION = 2  # 2: single-slice ROIs centred on their own slice (no z blend)
_DIGESTS: dict[tuple, str] = {}


def file_digest(ref: str) -> str:
    """BLAKE2b digest of a file, or of all files (names and bytes) of a folder; memoised
    per process by (path, size, mtime)."""
    path, selector = split_reference(ref)
    if not path.exists():
        raise InputError(Problem(str(path), "file or folder does not exist"))
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stamp = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if stamp in _DIGESTS:
        return _DIGESTS[stamp] + (f"#{selector}" if selector else "")
    h = hashlib.blake2b(digest_size=20)
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    _DIGESTS[stamp] = h.hexdigest()
    return _DIGESTS[stamp] + (f"#{selector}" if selector else "")


def instance_key(image_ref: str, mask_ref: str, bbox: str, params: dict) -> str:
    """Cache key of one image instance's patches."""
    h = hashlib.blake2b(digest_size=16)
    payload = {"v": FORMAT_VERSION, "code": code_hash("preprocess", "io"), "image": file_digest(image_ref), "mask": file_digest(mask_ref) if mask_ref else "",
               "bbox": bbox, "params": params}
    h.update(json.dumps(payload, sort_keys=True, default=str).encode())
    return h.hexdigest()


def save_patches(path: Path, array: np.ndarray, channels: list[str], meta: dict) -> None:
    """Write patches and their metadata atomically."""
    with atomic_write(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, patches=array, channels=np.asarray(channels), meta=np.asarray(json.dumps(meta, default=str)))


def load_patch_meta(path: str | os.PathLike) -> dict:
    """Only the metadata of a patch file (the array is not read)."""
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["meta"]))


def load_patches(path: str | os.PathLike) -> tuple[np.ndarray, list[str], dict]:
    """Read patches written by :func:`save_patches`: (array, channel names, metadata)."""
    with np.load(path, allow_pickle=False) as z:
        return z["patches"], [str(c) for c in z["channels"]], json.loads(str(z["meta"]))
