"""Stratified percentile bootstrap confidence intervals, seeded.

Resampling is stratified by outcome (cases and controls resampled separately, keeping
their counts, as ``pROC::ci.auc(method="bootstrap", boot.stratified=TRUE)``), and the
interval is the percentile interval (R ``quantile`` type 7). The AUC bootstrap is
vectorised: each resample is a vector of multiplicities, and the AUC of a weighted
sample follows from cumulative control weights at each case's rank, O(n) per resample
without re-sorting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from gastrorad.stats._checks import check_binary


@dataclass
class BootstrapCI:
    """A statistic with its bootstrap percentile interval and the replicates."""

    estimate: float
    lower: float
    upper: float
    level: float
    n_boot: int
    replicates: np.ndarray

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame([{"estimate": self.estimate, f"lower_{self.level:g}": self.lower,
                              f"upper_{self.level:g}": self.upper, "n_boot": self.n_boot}])


def _percentile(reps: np.ndarray, level: float) -> tuple[float, float]:
    a = (1 - level) / 2
    return float(np.quantile(reps, a)), float(np.quantile(reps, 1 - a))  # type 7, as R


def stratified_indices(y: np.ndarray, n_boot: int, rng: np.random.Generator, stratified: bool = True) -> np.ndarray:
    """(n_boot, n) resample indices; stratified keeps the number of cases and controls."""
    n = len(y)
    if not stratified:
        return rng.integers(0, n, size=(n_boot, n))
    cases, controls = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    return np.concatenate([cases[rng.integers(0, len(cases), size=(n_boot, len(cases)))],
                           controls[rng.integers(0, len(controls), size=(n_boot, len(controls)))]], axis=1)


def bootstrap_auc_replicates(y, *scores, n_boot: int = 2000, seed: int = 0, chunk_cells: int = 20_000_000) -> np.ndarray:
    """AUC of each score on ``n_boot`` stratified resamples: array (n_boot, k).

    All scores share the same resamples (paired), so differences are bootstrapped too.
    """
    y, arrs = check_binary(y, *scores)
    rng = np.random.default_rng(seed)
    case_idx, ctrl_idx = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    m, n = len(case_idx), len(ctrl_idx)
    out = np.empty((n_boot, len(arrs)))
    # Draw all resamples first, so the result does not depend on the chunking.
    draws_cases = rng.integers(0, m, size=(n_boot, m))
    draws_ctrl = rng.integers(0, n, size=(n_boot, n))
    step = max(1, chunk_cells // (m + n))
    for j, s in enumerate(arrs):
        x, z = s[case_idx], s[ctrl_idx]
        order = np.argsort(z, kind="stable")
        zs = z[order]
        rank_of = np.empty(n, dtype=np.int64)
        rank_of[order] = np.arange(n)
        lo = np.searchsorted(zs, x, side="left")   # controls strictly below each case
        hi = np.searchsorted(zs, x, side="right")  # ... at or below
        for b0 in range(0, n_boot, step):
            b1 = min(n_boot, b0 + step)
            nb = b1 - b0
            rows = np.arange(nb)[:, None]
            wc = np.bincount((rank_of[draws_ctrl[b0:b1]] + rows * n).ravel(), minlength=nb * n).reshape(nb, n)
            cum = np.zeros((nb, n + 1))
            np.cumsum(wc, axis=1, out=cum[:, 1:])
            wx = np.bincount((draws_cases[b0:b1] + rows * m).ravel(), minlength=nb * m).reshape(nb, m)
            below = cum[:, lo]
            ties = cum[:, hi] - below
            out[b0:b1, j] = (wx * (below + 0.5 * ties)).sum(axis=1) / (m * n)
    return out


def auc_ci_bootstrap(y, score, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> BootstrapCI:
    """AUC with a stratified percentile bootstrap CI (as ``pROC::ci.auc(method="bootstrap")``;
    equal to pROC within Monte Carlo error, since the random streams differ)."""
    from gastrorad.stats.roc import auc
    reps = bootstrap_auc_replicates(y, score, n_boot=n_boot, seed=seed)[:, 0]
    lo, hi = _percentile(reps, level)
    return BootstrapCI(auc(y, score), lo, hi, level, n_boot, reps)


def _replicate(statistic: Callable[..., float], y: np.ndarray, arrays: list[np.ndarray]):
    """The statistic on one resample (a row of indices); NaN where it is undefined."""
    def one(row: np.ndarray) -> float:
        try:
            return float(statistic(y[row], *[a[row] for a in arrays]))
        except (ValueError, ZeroDivisionError, FloatingPointError):
            return np.nan
    return one


def bootstrap_ci(y, statistic: Callable[..., float], *arrays, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0, stratified: bool = True, n_jobs: int | None = 1) -> BootstrapCI:
    """Percentile CI of any ``statistic(y, *arrays)`` over stratified resamples of patients.

    Resamples where the statistic is undefined (it raises or returns NaN) are dropped;
    the number kept is ``n_boot`` of the result. All resamples are drawn from ``seed``
    before any is evaluated, so ``n_jobs`` processes (:func:`.resample.map_replicates`, used
    when the statistic is slow enough to pay for them) give the serial result.
    """
    from gastrorad.stats.resample import map_replicates
    y = np.asarray(y).astype(int)
    arrays = [np.asarray(a) for a in arrays]
    rng = np.random.default_rng(seed)
    idx = stratified_indices(y, n_boot, rng, stratified)
    reps = np.asarray(map_replicates(_replicate(statistic, y, arrays), idx, n_jobs=n_jobs), float)
    reps = reps[np.isfinite(reps)]
    lo, hi = _percentile(reps, level) if len(reps) else (np.nan, np.nan)
    return BootstrapCI(float(statistic(y, *arrays)), lo, hi, level, len(reps), reps)
