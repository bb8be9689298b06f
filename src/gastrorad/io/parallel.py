"""Per-patient work over a process pool, with progress: preprocessing and handcrafted radiomics."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable


def map_patients(fn: Callable, tasks: list, workers: int, progress: Callable[[int, int], None] | None = None) -> list:
    """``fn`` over ``tasks`` in ``workers`` processes (in this process when 1 or a single task);
    results in completion order, ``progress(done, total)`` after each."""
    results = []
    if workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
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
