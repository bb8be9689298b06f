"""Cumulative/dynamic time-dependent AUC with inverse-probability-of-censoring weights.

At horizon t, cases are patients with an event by t (T_i <= t, event), controls those
still event-free after t (T_j > t). Each case is weighted by 1 / G(T_i-), G the
Kaplan-Meier estimate of censoring; the controls' common weight 1 / G(t) cancels
(Uno 2007; Blanche, Dartigues and Jacqmin-Gadda 2013, the ``timeROC`` estimator).
Score ties count 1/2.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gastrorad.stats.survival._checks import check_survival
from gastrorad.stats.survival.concordance import censoring_survival_left


def time_dependent_auc(time, event, risk, horizons) -> pd.DataFrame:
    """AUC(t) for each horizon t: columns horizon, auc, cases, controls."""
    time, event, (risk,) = check_survival(time, event, risk)
    risk = risk.astype(float)
    g = censoring_survival_left(time, event, time)
    rows = []
    for t in np.atleast_1d(horizons).astype(float):
        case = (time <= t) & (event == 1)
        ctrl = time > t
        if not case.any() or not ctrl.any():
            rows.append({"horizon": t, "auc": np.nan, "cases": int(case.sum()), "controls": int(ctrl.sum())})
            continue
        rc, wc = risk[case], 1.0 / g[case]
        rk = np.sort(risk[ctrl])
        below = np.searchsorted(rk, rc, side="left")
        ties = np.searchsorted(rk, rc, side="right") - below
        auc = float(np.sum(wc * (below + 0.5 * ties)) / (np.sum(wc) * len(rk)))
        rows.append({"horizon": t, "auc": auc, "cases": int(case.sum()), "controls": int(ctrl.sum())})
    return pd.DataFrame(rows)
