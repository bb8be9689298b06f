"""Per-patient work on Dask distributed: preprocessing, handcrafted radiomics, Grad-CAM.

Where the work runs is a :class:`Compute` (the study file's ``compute:`` section):

- ``scheduler: serial``: in this process, one patient after the other;
- ``scheduler: local`` (default): a Dask ``LocalCluster`` of ``workers`` processes started for
  the call and closed after it (also on an error or Ctrl-C); with one worker, or one patient,
  the work stays in this process, since a cluster would only add its start-up time;
- an address (``tcp://host:8786``): an existing Dask scheduler, e.g. one started by
  dask-jobqueue on SLURM or by dask-kubernetes. Its workers must see the same files (a
  shared file system) and run the same gastrorad.

Dask does the scheduling; this module only submits one task per patient, counts attempts
and turns a patient that failed twice into that patient's problems, so the others finish.
A per-patient function signals a failed patient by raising :class:`TaskFailed` with what it
did compute; the task is then retried once (an unreadable file on network storage is
often transient) and, if it fails again, its result is reported. Any other exception (a
bug, a worker killed by its memory limit) is retried the same way and handed to the
caller's ``on_failure``.

Results do not depend on where they ran: a task is a pure function of its patient's files
and settings, and its outputs are keyed by those (see :mod:`gastrorad.preprocess.cache`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

from gastrorad.errors import InputError, Problem

SERIAL = "serial"
LOCAL = "local"
_QUIET = ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.worker", "distributed.core",
          "distributed.http.proxy", "distributed.client")


@dataclass(frozen=True)
class Compute:
    """Where per-patient tasks run: ``scheduler`` ('serial', 'local' or a Dask scheduler address),
    local ``workers`` (processes), ``threads_per_worker`` (also the ITK/BLAS/torch threads of
    each worker), ``memory_limit`` per local worker ('auto', '4GB', None: no limit) and how many
    times a failed task is ``retries``-ed."""

    scheduler: str = LOCAL
    workers: int = 1
    threads_per_worker: int = 1
    memory_limit: str | None = "auto"
    retries: int = 1

    @classmethod
    def from_settings(cls, section: Any = None, *, workers: int | None = None, scheduler: str | None = None,
                      default_workers: int = 1) -> "Compute":
        """From a ``compute:`` section (any object with its fields) and command-line overrides:
        ``workers`` wins over ``section.workers``, which wins over ``default_workers`` (the
        stage's own setting, e.g. ``preprocess.workers``)."""
        get = (lambda name, default: getattr(section, name, default)) if section is not None else (
            lambda name, default: default)
        return cls(scheduler=scheduler or get("scheduler", LOCAL),
                   workers=int(workers or get("workers", None) or default_workers),
                   threads_per_worker=int(get("threads_per_worker", 1)),
                   memory_limit=get("memory_limit", "auto"))

    def __post_init__(self):
        if not self.remote:
            return
        if "://" not in self.scheduler and ":" not in self.scheduler:
            raise InputError(Problem("study file", f"compute.scheduler '{self.scheduler}' is neither 'local', 'serial' "
                                     "nor a Dask scheduler address such as tcp://host:8786",
                                     column="compute.scheduler"))

    @property
    def remote(self) -> bool:
        """True when the scheduler is an address of an existing cluster."""
        return self.scheduler not in (SERIAL, LOCAL)

    def in_process(self, tasks: int = 2) -> bool:
        """True when ``tasks`` tasks run in this process rather than on a cluster."""
        return self.scheduler == SERIAL or (self.scheduler == LOCAL and (self.workers <= 1 or tasks <= 1))


class TaskFailed(Exception):
    """Raised by a per-patient function whose patient failed: carries what it did compute
    (``result``, e.g. its problems and the instances that worked) so the task can be retried and,
    if it fails again, reported without losing the rest."""

    def __init__(self, result: Any, reason: str = ""):
        super().__init__(reason or "task failed")
        self.result, self.reason = result, reason

    def __reduce__(self):  # travels back from a worker process
        return (TaskFailed, (self.result, self.reason))


class FailOnProblems:
    """A per-patient function whose result dict has ``problems``, as a task that fails (and so is
    retried) when its patient has any."""

    def __init__(self, fn: Callable[[Any], dict]):
        self.fn = fn

    def __call__(self, task: Any) -> dict:
        result = self.fn(task)
        if result.get("problems"):
            raise TaskFailed(result, "; ".join(p.reason for p in result["problems"]))
        return result


def failed_result(error: BaseException, attempts: int, *, empty: dict,
                  problems: Callable[[str], list[Problem]]) -> dict:
    """The result of a patient that failed on every attempt (an ``on_failure`` helper): a
    :class:`TaskFailed`'s own result with the attempts added to each reason, or ``empty`` with
    ``problems(reason)`` for any other error (e.g. a worker killed by its memory limit)."""
    tries = f"failed on {attempts} attempt(s)"
    if isinstance(error, TaskFailed):
        res = dict(error.result)
        res["problems"] = [replace(p, reason=f"{p.reason}; {tries}") for p in res["problems"]]
        return res
    return {**empty, "problems": problems(f"{type(error).__name__}: {error}; {tries}")}


def _quiet_logs(level: int = logging.ERROR) -> dict[str, int]:
    before = {name: logging.getLogger(name).level for name in _QUIET}
    for name in _QUIET:
        logging.getLogger(name).setLevel(level)
    return before


@contextlib.contextmanager
def dask_client(compute: Compute) -> Iterator[Any]:
    """A ``distributed.Client`` for ``compute``: a LocalCluster started here (and closed on the
    way out, also on errors and KeyboardInterrupt), or a connection to ``compute.scheduler``.
    distributed's INFO logs are silenced while it is open."""
    import dask
    from distributed import Client, LocalCluster

    before = _quiet_logs()
    try:
        if compute.remote:
            try:
                client = Client(compute.scheduler, timeout="30s")
            except (OSError, TimeoutError) as exc:
                raise InputError(Problem("study file", f"cannot reach the Dask scheduler at {compute.scheduler}: "
                                         f"{exc}", column="compute.scheduler")) from None
            with client:
                yield client
            return
        threads = str(compute.threads_per_worker)
        env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
               "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": threads}
        # distributed spawns its workers with MALLOC_TRIM_THRESHOLD_=65536; setting it switches off glibc's dynamic
        # mmap threshold, so every large array is mmapped and unmapped again: a worker spent about a third more CPU
        # per patient than the same code in this process (bench/scale.py). The workers start with glibc's defaults.
        # (A nanny also writes its pre-spawn variables into this process's environment for good, so one left by an
        # earlier cluster is taken out while the workers start, and put back.)
        pre_spawn = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
                     if k != TRIM}
        with dask.config.set({"distributed.nanny.pre-spawn-environ": pre_spawn}), _without_env(TRIM), \
                LocalCluster(n_workers=compute.workers, threads_per_worker=compute.threads_per_worker, processes=True,
                             memory_limit=compute.memory_limit or 0, dashboard_address=None,
                             silence_logs=logging.CRITICAL, env=env,
                             # no dashboard; the scheduler's own HTTP endpoint on any free local port (its default,
                             # 8787, is taken when two runs overlap, and distributed then warns on the console)
                             scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster, \
                Client(cluster) as client:
            yield client
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)


TRIM = "MALLOC_TRIM_THRESHOLD_"


@contextlib.contextmanager
def _without_env(name: str) -> Iterator[None]:
    """``name`` absent from this process's environment inside the block (restored after)."""
    saved = os.environ.pop(name, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[name] = saved


FailureHandler = Callable[[Any, BaseException, int], Any]


# Errors of the machine, not of a patient: a full disk or a read-only output folder fails every patient alike, so
# the stage stops at once (the command line turns these into one line naming the path) instead of retrying and
# reporting each patient.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def storage_error(error: BaseException) -> bool:
    """True for an error of the storage the run writes to (disk full, quota, read-only)."""
    return isinstance(error, OSError) and error.errno in _STORAGE_ERRNOS


def _give_up(task: Any, error: BaseException, attempts: int, on_failure: FailureHandler | None) -> Any:
    if on_failure is not None:
        return on_failure(task, error, attempts)
    if isinstance(error, TaskFailed):
        return error.result
    raise error


def map_patients(fn: Callable, tasks: list, compute: Compute | int,
                 progress: Callable[[int, int], None] | None = None, *,
                 on_failure: FailureHandler | None = None) -> list:
    """``fn`` over ``tasks`` (one per patient) where ``compute`` says; results in completion order.

    ``compute`` may be a plain worker count (a LocalCluster when above 1). A task that raises is
    run again up to ``compute.retries`` times; when it still fails, its result is
    ``on_failure(task, error, attempts)`` (default: a :class:`TaskFailed`'s ``result``; any other
    error is raised). ``progress(done, total)`` is called after each patient.
    """
    if not isinstance(compute, Compute):
        compute = Compute(workers=int(compute))
    if compute.in_process(len(tasks)):
        return _map_here(fn, tasks, compute.retries, progress, on_failure)
    return _map_dask(fn, tasks, compute, progress, on_failure)


def _map_here(fn, tasks, retries, progress, on_failure) -> list:
    results = []
    for done, task in enumerate(tasks, 1):
        for attempt in range(1, retries + 2):
            try:
                results.append(fn(task))
                break
            except Exception as exc:  # noqa: BLE001 - one patient's failure must not stop the others
                if storage_error(exc):
                    raise
                if attempt > retries:
                    results.append(_give_up(task, exc, attempt, on_failure))
        if progress:
            progress(done, len(tasks))
    return results


def _map_dask(fn, tasks, compute: Compute, progress, on_failure) -> list:
    from distributed import as_completed

    results = []
    with dask_client(compute) as client:
        futures = [client.submit(fn, task, pure=False) for task in tasks]
        task_of = {f.key: task for f, task in zip(futures, tasks)}
        attempts = dict.fromkeys(task_of, 1)
        pending = as_completed(futures)
        done = 0
        for fut in pending:
            if fut.status == "finished":
                results.append(fut.result())
            else:
                if storage_error(fut.exception()):
                    raise fut.exception()
                if attempts[fut.key] <= compute.retries:
                    attempts[fut.key] += 1
                    fut.retry()
                    pending.add(fut)
                    continue
                results.append(_give_up(task_of[fut.key], fut.exception(), attempts[fut.key], on_failure))
            fut.release()
            done += 1
            if progress:
                progress(done, len(tasks))
    return results


def worker_usage(client) -> dict[str, dict[str, float]]:
    """:func:`process_usage` of every worker process of ``client``'s cluster, by worker address."""
    return client.run(process_usage)


def process_usage() -> dict[str, float]:
    """This process's peak resident set (``ru_maxrss``) and current RSS in MB, and the CPU
    seconds it has used (user + system)."""
    import resource

    use = resource.getrusage(resource.RUSAGE_SELF)
    try:
        import psutil
        rss = psutil.Process(os.getpid()).memory_info().rss / 2 ** 20
    except ImportError:
        rss = float("nan")
    return {"peak_rss_mb": round(use.ru_maxrss / 1024, 1),  # KiB on Linux
            "rss_mb": round(rss, 1), "cpu_s": round(use.ru_utime + use.ru_stime, 2)}


__all__ = ["Compute", "FailOnProblems", "TaskFailed", "failed_result", "dask_client", "map_patients", "process_usage",
           "worker_usage"]
