"""Calibration of predicted t-year survival, and survival decision curves.

- :func:`survival_calibration`: patients grouped by predicted survival at t (as
  ``Hmisc::cut2``); in each group the mean prediction against the Kaplan-Meier estimate at
  t with its log-scale CI (mirrors ``rms::groupkm(pred, Surv, g, u = t)``); plus the
  overall observed/expected (:func:`observed_expected`).
- :func:`survival_net_benefit`: net benefit at horizon t of treating patients whose
  predicted risk by t is >= pt, with the Kaplan-Meier estimate among the treated as the
  outcome (as ``dcurves::dca`` with a ``Surv`` outcome and ``time = t``):
  NB = P(treated) [(1 - S_treated(t)) - S_treated(t) pt / (1 - pt)].
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gastrorad.stats.survival._checks import check_survival
from gastrorad.stats.survival.kaplan_meier import kaplan_meier


def _km_at(time, event, t):
    km = kaplan_meier(time, event)
    idx = np.searchsorted(km.table.time.to_numpy(), t, side="right") - 1
    if idx < 0:
        return 1.0, 0.0, 1.0, 1.0
    row = km.table.iloc[idx]
    return float(row.surv), float(row.std_err), float(row.lower), float(row.upper)


def cut2_groups(x: np.ndarray, g: int) -> np.ndarray:
    """0-based group of each value in ``g`` groups of about equal counts, as
    ``Hmisc::cut2(x, g = g)`` (the grouping ``rms::groupkm`` uses): the j-th cut is the
    first distinct value whose cumulative count reaches j n / g, and each group runs up to
    and including its cut."""
    xx, counts = np.unique(x, return_counts=True)
    cum = np.cumsum(counts)
    n = len(x)
    idx = np.clip(np.searchsorted(cum, np.arange(1, g + 1) * n / g - 1e-9, side="left"), 0, len(xx) - 1)
    cuts = xx[idx]
    cuts[-1] = xx[-1]
    cuts = np.unique(cuts)
    return np.searchsorted(cuts, x, side="left")


def survival_calibration(time, event, predicted_survival, t: float, groups: int = 10) -> pd.DataFrame:
    """Observed (Kaplan-Meier) vs predicted survival at ``t`` in ``groups`` groups of the prediction."""
    time, event, (pred,) = check_survival(time, event, predicted_survival)
    pred = pred.astype(float)
    grp = cut2_groups(pred, groups)
    rows = []
    for k in range(grp.max() + 1):
        m = grp == k
        if not m.any():
            continue
        s, se, lo, hi = _km_at(time[m], event[m], t)
        rows.append({"group": k + 1, "n": int(m.sum()), "events": int(event[m].sum()),
                     "predicted": float(pred[m].mean()), "observed": s, "std_err": se, "lower": lo, "upper": hi})
    return pd.DataFrame(rows)


def observed_expected(time, event, predicted_survival, t: float) -> float:
    """Calibration in the large at t: (1 - KM(t)) / mean predicted risk by t."""
    time, event, (pred,) = check_survival(time, event, predicted_survival)
    s, *_ = _km_at(time, event, t)
    return float((1 - s) / np.mean(1 - pred.astype(float)))


def survival_net_benefit(time, event, risk_at_t, t: float, thresholds) -> pd.DataFrame:
    """Net benefit of a model, treat-all and treat-none at horizon ``t`` (long format)."""
    time, event, (risk,) = check_survival(time, event, risk_at_t)
    risk = risk.astype(float)
    thresholds = np.asarray(thresholds, float)
    n = len(time)
    s_all, *_ = _km_at(time, event, t)
    rows = []
    for pt in thresholds:
        odds = pt / (1 - pt)
        treated = risk >= pt
        if treated.any():
            s_tr, *_ = _km_at(time[treated], event[treated], t)
            nb = treated.sum() / n * ((1 - s_tr) - s_tr * odds)
        else:
            nb = 0.0
        rows += [{"model": "model", "threshold": pt, "net_benefit": float(nb)},
                 {"model": "treat_all", "threshold": pt, "net_benefit": float((1 - s_all) - s_all * odds)},
                 {"model": "treat_none", "threshold": pt, "net_benefit": 0.0}]
    return pd.DataFrame(rows)
