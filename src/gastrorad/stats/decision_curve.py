"""Decision curve analysis (Vickers and Elkin 2006) for binary outcomes.

Net benefit at threshold probability pt: NB = TP/n - FP/n * pt / (1 - pt), with a
patient treated when p >= pt (as ``dcurves::dca``); treat-all uses prevalence, treat-none
is 0. Bootstrap bands are stratified percentile intervals of NB at each threshold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gastrorad.stats._checks import check_binary
from gastrorad.stats.bootstrap import stratified_indices


def net_benefit(y, p, thresholds) -> np.ndarray:
    """Net benefit of treating patients with ``p >= pt`` for each threshold ``pt``."""
    y, (p,) = check_binary(y, p)
    thresholds = np.asarray(thresholds, dtype=float)
    if np.any((thresholds <= 0) | (thresholds >= 1)):
        raise ValueError("threshold probabilities must lie strictly between 0 and 1")
    n = len(y)
    treat = p[None, :] >= thresholds[:, None]
    tp = (treat & (y == 1)).sum(axis=1)
    fp = (treat & (y == 0)).sum(axis=1)
    return tp / n - fp / n * thresholds / (1 - thresholds)


def decision_curve(y, models: dict[str, np.ndarray], thresholds=None, *, n_boot: int = 0, seed: int = 0,
                   level: float = 0.95) -> pd.DataFrame:
    """Net benefit of each model, treat-all and treat-none over ``thresholds`` (default
    0.01..0.99), long format; with ``n_boot`` > 0 adds bootstrap ``lower``/``upper`` bands."""
    y = np.asarray(y).astype(int)
    thresholds = np.round(np.arange(0.01, 1.0, 0.01), 2) if thresholds is None else np.asarray(thresholds, float)
    prev = y.mean()
    frames = [pd.DataFrame({"model": "treat_all", "threshold": thresholds,
                            "net_benefit": prev - (1 - prev) * thresholds / (1 - thresholds)}),
              pd.DataFrame({"model": "treat_none", "threshold": thresholds, "net_benefit": 0.0})]
    idx = stratified_indices(y, n_boot, np.random.default_rng(seed)) if n_boot else None
    for name, p in models.items():
        p = np.asarray(p, dtype=float)
        df = pd.DataFrame({"model": name, "threshold": thresholds, "net_benefit": net_benefit(y, p, thresholds)})
        if idx is not None:
            reps = np.stack([net_benefit(y[r], p[r], thresholds) for r in idx])
            a = (1 - level) / 2
            df["lower"], df["upper"] = np.quantile(reps, a, axis=0), np.quantile(reps, 1 - a, axis=0)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)
