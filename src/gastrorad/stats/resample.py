"""Resampling replicates (bootstrap samples, cross-validation folds) run in parallel processes,
with the serial result.

Every replicate's randomness is drawn by the caller before any replicate runs (bootstrap
indices, fold ids), so a replicate's result depends on its own inputs only: never on the
number of jobs, how replicates are batched or the order in which they finish. Results come
back in replicate order, and ``n_jobs=1`` runs the very same function in this process.

Processes pay off only for enough work (starting the loky workers costs ~1 s the first
time, and each batch of replicates is pickled to them): the first replicate runs here and
is timed, and the others go to ``n_jobs`` processes only when running them here would
take longer than ``min_seconds``. A 2000-resample AUC bootstrap (milliseconds) thus stays
in this process; an optimism-corrected validation that refits a selection procedure 200
times goes to the workers (``bench/stats.py --parallel`` measures both).
"""

from __future__ import annotations

import time
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Serial seconds of the remaining replicates above which they go to worker processes.
MIN_SECONDS = 2.0


def _run_batch(func: Callable[[T], R], items: Sequence[T]) -> list[R]:
    return [func(item) for item in items]


def map_replicates(func: Callable[[T], R], items: Sequence[T], *, n_jobs: int | None = 1,
                   min_seconds: float | None = None) -> list[R]:
    """``[func(item) for item in items]``, in item order, on up to ``n_jobs`` loky processes.

    ``func`` must be deterministic given its item (draw random numbers before, in the
    caller) and picklable by cloudpickle (closures are). It runs in this process when
    ``n_jobs`` is 1 or None, or when the first item took less than ``min_seconds`` divided by
    the number of items left (default :data:`MIN_SECONDS`).
    """
    items = list(items)
    if not items:
        return []
    t0 = time.perf_counter()
    first = func(items[0])
    rest = items[1:]
    n_jobs = max(1, int(n_jobs or 1))
    min_seconds = MIN_SECONDS if min_seconds is None else min_seconds
    if n_jobs == 1 or not rest or (time.perf_counter() - t0) * len(rest) < min_seconds:
        return [first, *(_run_batch(func, rest))]
    from joblib import Parallel, delayed
    # a few batches per worker: balances uneven replicates, pickles func once per batch
    n_batches = min(len(rest), 4 * n_jobs)
    bounds = [round(k * len(rest) / n_batches) for k in range(n_batches + 1)]
    batches = Parallel(n_jobs=n_jobs, backend="loky")(
        delayed(_run_batch)(func, rest[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))
    return [first, *(r for batch in batches for r in batch)]
