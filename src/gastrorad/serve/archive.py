"""Unpacking uploaded zip archives (a DICOM series, or a batch's images) without trusting them.

Refused, before anything is written: entries with absolute paths, drive letters or ``..``
(zip slip), symbolic links, too many entries, and zip bombs: an entry or the whole archive
whose declared uncompressed size exceeds the total limit or the compression-ratio limit.
The declared sizes are not trusted either: extraction counts the bytes it writes and stops
at the same limits.
"""

from __future__ import annotations

import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from gastrorad.errors import InputError, Problem


def _unsafe_name(name: str) -> str | None:
    if "\\" in name:
        name = name.replace("\\", "/")
    p = PurePosixPath(name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in p.parts:
        return "'..' in the path"
    if "\x00" in name:
        return "NUL character in the name"
    return None


def safe_extract(archive: Path, dest: Path, *, field: str, max_total: int, max_ratio: float,
                 max_entries: int) -> list[Path]:
    """Extract ``archive`` into ``dest``; returns the files written. ``field`` names the upload in errors."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(Problem(field, f"not a readable zip archive ({exc})")) from None
    with zf:
        infos = zf.infolist()
        if len(infos) > max_entries:
            raise InputError(Problem(field, f"refused: {len(infos)} entries in the archive (limit {max_entries})"))
        problems = []
        total = packed = 0
        for info in infos:
            why = _unsafe_name(info.filename)
            if why:
                problems.append(Problem(field, f"refused (zip slip): entry '{info.filename[:200]}' has an {why}"
                                        if why == "absolute path" else
                                        f"refused (zip slip): entry '{info.filename[:200]}' has {why}"))
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                problems.append(Problem(field, f"refused: entry '{info.filename[:200]}' is a symbolic link"))
            total += info.file_size
            packed += info.compress_size
            if info.file_size > 1_000_000 and info.file_size > max_ratio * max(info.compress_size, 1):
                problems.append(Problem(field, f"refused (zip bomb): entry '{info.filename[:200]}' expands "
                                        f"{info.file_size / max(info.compress_size, 1):.0f}-fold "
                                        f"(limit {max_ratio:g})"))
        if total > max_total:
            problems.append(Problem(field, f"refused (zip bomb): the archive expands to {total / 1e6:.0f} MB "
                                    f"(limit {max_total / 1e6:.0f} MB)"))
        elif total > 1_000_000 and total > max_ratio * max(packed, 1):
            problems.append(Problem(field, f"refused (zip bomb): the archive expands {total / max(packed, 1):.0f}-fold "
                                    f"(limit {max_ratio:g})"))
        if problems:
            raise InputError(problems)
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        written, out_bytes = [], 0
        for info in infos:
            target = (root / info.filename).resolve()
            if root not in target.parents and target != root:
                raise InputError(Problem(field, f"refused (zip slip): entry '{info.filename[:200]}' leaves the folder"))
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "wb") as dst:
                    entry = 0
                    while chunk := src.read(1 << 20):
                        entry += len(chunk)
                        out_bytes += len(chunk)
                        if entry > info.file_size or out_bytes > max_total:  # sizes in the header were lies
                            raise InputError(Problem(field, f"refused (zip bomb): entry '{info.filename[:200]}' "
                                                     "holds more data than its header declares"))
                        dst.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
                # a CRC that does not match, sizes that understate the data, an encrypted entry
                raise InputError(Problem(field, f"refused: the zip archive is damaged or its headers do not match "
                                         f"its contents (entry '{info.filename[:200]}': {str(exc)[:120]}); "
                                         "zip the files again")) from None
            written.append(target)
        return written
