"""One writer per run folder: an exclusive lock, and the clean-up it makes safe.

Two ``gastrorad run`` on one output folder used to interleave their stages, so the final
metrics matched neither study. :func:`run_folder_lock` takes an exclusive ``flock`` on
``<folder>/.run/lock`` (released by the kernel when the process ends, even by SIGKILL, so a
killed run never leaves a stale lock) and writes the holder's PID into it; a second run fails
at once with a message naming that PID. Holding the lock, the run removes the temporary files
a killed run left behind (:data:`gastrorad.io.atomic.TEMP_PREFIX`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path
from typing import Iterator

from gastrorad.errors import InputError, Problem
from gastrorad.io.atomic import TEMP_PREFIX


class ProcessLock:
    """An exclusive ``flock`` on ``path`` holding this process's PID; :meth:`acquire` returns
    None when taken, or the PID written by the process that holds it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> str | None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            return holder
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None


@contextlib.contextmanager
def run_folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold the exclusive lock of run folder ``folder``; InputError naming the holder if taken."""
    folder = Path(folder)
    lock = ProcessLock(folder / ".run" / "lock")
    holder = lock.acquire()
    if holder is not None:
        raise InputError(Problem(str(folder), f"another gastrorad process (PID {holder}) is writing to this run "
                                 "folder; wait for it to finish, or give this run another output folder"))
    try:
        remove_stale_temporaries(folder)
        yield lock.path
    finally:
        lock.release()


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files of interrupted atomic writes under ``folder`` (and the temporary
    folders of interrupted downloads, :mod:`gastrorad.io.remote`); returns them."""
    stale = [p for p in folder.rglob(f"{TEMP_PREFIX}*") if p.is_file() or p.is_dir()]
    for p in stale:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return stale
