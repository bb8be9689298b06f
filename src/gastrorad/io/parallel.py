"""Per-patient work over a process pool, with progress: preprocessing and handcrafted radiomics.

Workers die with their parent: killed by SIGKILL, a run used to leave its pool's workers
running. Each worker asks the Linux kernel for SIGKILL when its parent dies
(``prctl(PR_SET_PDEATHSIG)``); elsewhere it checks its parent between tasks.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Pool initializer: this worker is killed when process ``parent`` ends."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers end with this process."""
    return ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent, initargs=(os.getpid(),))


def map_patients(fn: Callable, tasks: list, workers: int, progress: Callable[[int, int], None] | None = None) -> list:
    """``fn`` over ``tasks`` in ``workers`` processes (in this process when 1 or a single task);
    results in completion order, ``progress(done, total)`` after each."""
    results = []
    if workers > 1 and len(tasks) > 1:
        with process_pool(workers) as pool:
            futures = [pool.submit(fn, t) for t in tasks]
            for done, fut in enumerate(as_completed(futures), 1):
                results.append(fut.result())
                if progress:
                    progress(done, len(tasks))
    else:
        for done, t in enumerate(tasks, 1):
            results.append(fn(t))
            if progress:
                progress(done, len(tasks))
    return results
