"""The study file's ``compute:`` section: where a run's work goes (a local or remote Dask cluster for
per-patient work, parallel processes for the resampling statistics).
"""

from __future__ import annotations

from pydantic import Field

from gastrorad.config.base import Strict


class ComputeConfig(Strict):
    """Where the run's work goes: per-patient work (preprocess, deep features, radiomics, scoring, explain) on
    Dask, resampling statistics (bootstrap, optimism correction, CV folds) in parallel processes."""

    scheduler: str = Field("local", description=(
        "'local': a Dask LocalCluster started for the run (nothing to set up); 'serial': this process only; "
        "or the address of a running Dask scheduler (tcp://host:8786), e.g. one started by dask-jobqueue on "
        "SLURM or dask-kubernetes."))
    workers: int | None = Field(None, ge=1, description=(
        "Worker processes of the local cluster and parallel jobs of the resampling statistics "
        "(default: each stage's own setting, preprocess.workers or radiomics.workers). With 1 worker "
        "the work stays in this process."))
    threads_per_worker: int = Field(1, ge=1, description="Threads per Dask worker (torch and ITK threads too).")
    memory_limit: str | None = Field("auto", description="Memory limit per local worker, e.g. '4GB'; 'auto' "
                                                         "shares the machine's memory; null: no limit.")
