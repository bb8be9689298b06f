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


def bootstrap_validate(df: pd.DataFrame, fit: Callable[[pd.DataFrame], Callable[[pd.DataFrame], np.ndarray]], *,
                       kind: str = "binary", outcome: str = "label", time: str = "time", event: str = "event",
                       n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Apparent, optimism and corrected indices (rows) as ``rms::validate(fit, B = n_boot)``.

    Bootstrap fits that fail (e.g. no event in a resample) are skipped and counted in ``n``.
    """
    def indices(frame_fit, frame_eval):
        predict = fit(frame_fit)
        lp = np.asarray(predict(frame_eval), float)
        if kind == "binary":
            return _binary_indices(lp, frame_eval[outcome].to_numpy().astype(int))
        return _survival_indices(lp, frame_eval[time].to_numpy(float), frame_eval[event].to_numpy().astype(int))

    df = df.reset_index(drop=True)
    apparent = indices(df, df)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for _ in range(n_boot):
        b = df.iloc[rng.integers(0, len(df), len(df))].reset_index(drop=True)
        try:
            predict = fit(b)
            lp_b = np.asarray(predict(b), float)
            lp_o = np.asarray(predict(df), float)
            if kind == "binary":
                tr = _binary_indices(lp_b, b[outcome].to_numpy().astype(int))
                te = _binary_indices(lp_o, df[outcome].to_numpy().astype(int))
            else:
                tr = _survival_indices(lp_b, b[time].to_numpy(float), b[event].to_numpy().astype(int))
                te = _survival_indices(lp_o, df[time].to_numpy(float), df[event].to_numpy().astype(int))
        except (ValueError, np.linalg.LinAlgError):
            continue
        train.append(tr)
        test.append(te)
    tr, te = pd.DataFrame(train), pd.DataFrame(test)
    optimism = (tr - te).mean()
    out = pd.DataFrame({"index.orig": pd.Series(apparent), "training": tr.mean(), "test": te.mean(),
                        "optimism": optimism})
    out["index.corrected"] = out["index.orig"] - out["optimism"]
    out["n"] = len(tr)
    return out
