"""Optimism-corrected bootstrap validation of a whole modelling procedure (``rms::validate``).

The procedure (selection included) is a function ``fit(df) -> predict`` where ``predict(df)``
returns the linear predictor. For each of B bootstrap samples the procedure is refitted;
its performance on the bootstrap sample minus its performance on the original data is the
optimism; the corrected index is the apparent index minus the mean optimism (Efron;
Harrell, Regression Modeling Strategies, 5.3). Indices: binary: Dxy (= 2 AUC - 1), AUC,
calibration intercept and slope of the linear predictor, Brier score; survival: Dxy
(= 2 C - 1), C and the Cox calibration slope.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from gastrorad.stats.calibration import _logistic_fit
from gastrorad.stats.roc import auc


def _binary_indices(lp: np.ndarray, y: np.ndarray) -> dict[str, float]:
    a = auc(y, lp)
    intercept, slope = _logistic_fit(lp, y.astype(float))
    p = 1 / (1 + np.exp(-lp))
    return {"Dxy": 2 * a - 1, "AUC": a, "Intercept": intercept, "Slope": slope, "Brier": float(np.mean((p - y) ** 2))}


def _survival_indices(lp: np.ndarray, time: np.ndarray, event: np.ndarray) -> dict[str, float]:
    from gastrorad.stats.survival.concordance import harrell_c
    from gastrorad.stats.survival.cox import fit_cox
    c = harrell_c(time, event, lp).c
    slope = fit_cox(pd.DataFrame({"t": time, "e": event, "lp": lp}), "t", "e", ["lp"]).coef[0]
    return {"Dxy": 2 * c - 1, "C": c, "Slope": float(slope)}


def _optimism_replicate(df: pd.DataFrame, fit, indices):
    """Refit on one bootstrap sample (row numbers of ``df``); (indices on the sample, indices
    on the original data), or None when the procedure fails on that sample."""
    def one(rows: np.ndarray):
        b = df.iloc[rows].reset_index(drop=True)
        try:
            predict = fit(b)
            return indices(predict, b), indices(predict, df)
        except (ValueError, np.linalg.LinAlgError):
            return None
    return one


def bootstrap_validate(df: pd.DataFrame, fit: Callable[[pd.DataFrame], Callable[[pd.DataFrame], np.ndarray]], *,
                       kind: str = "binary", outcome: str = "label", time: str = "time", event: str = "event",
                       n_boot: int = 200, seed: int = 0, n_jobs: int | None = 1) -> pd.DataFrame:
    """Apparent, optimism and corrected indices (rows) as ``rms::validate(fit, B = n_boot)``.

    Bootstrap fits that fail (e.g. no event in a resample) are skipped and counted in ``n``.
    Every bootstrap sample is drawn from ``seed`` first; the refits then run on ``n_jobs``
    processes (:func:`.resample.map_replicates`) with the serial result. ``fit`` must be
    picklable by cloudpickle for that (closures are).
    """
    from gastrorad.stats.resample import map_replicates

    def indices(predict, frame):
        lp = np.asarray(predict(frame), float)
        if kind == "binary":
            return _binary_indices(lp, frame[outcome].to_numpy().astype(int))
        return _survival_indices(lp, frame[time].to_numpy(float), frame[event].to_numpy().astype(int))

    df = df.reset_index(drop=True)
    apparent = indices(fit(df), df)
    rows = np.random.default_rng(seed).integers(0, len(df), (n_boot, len(df)))
    done = [r for r in map_replicates(_optimism_replicate(df, fit, indices), rows, n_jobs=n_jobs) if r is not None]
    tr, te = pd.DataFrame([r[0] for r in done]), pd.DataFrame([r[1] for r in done])
    optimism = (tr - te).mean()
    out = pd.DataFrame({"index.orig": pd.Series(apparent), "training": tr.mean(), "test": te.mean(),
                        "optimism": optimism})
    out["index.corrected"] = out["index.orig"] - out["optimism"]
    out["n"] = len(tr)
    return out
