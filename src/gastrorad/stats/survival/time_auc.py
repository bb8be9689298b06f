"""Cumulative/dynamic time-dependent AUC with inverse-probability-of-censoring weights, as
``timeROC::timeROC(T, delta, marker, cause = 1, weighting = "marginal", times, iid = TRUE)``
(Blanche, Dartigues and Jacqmin-Gadda 2013; timeROC 0.4.1).

At horizon t, cases are patients with an event strictly before t (T_i < t), controls those
still under follow-up after t (T_j > t); a patient whose follow-up ends exactly at t is
neither. Each case is weighted by 1 / G(T_i-), G the Kaplan-Meier estimate of the censoring
distribution in which deaths tied with censorings leave the risk set first (the ``pec::ipcw``
/ ``prodlim(reverse = TRUE)`` convention); the controls' common weight 1 / G(t) cancels.
Score ties between a case and a control count 1/2 (the trapezoidal ROC area).

The standard error is timeROC's (``iid = TRUE``): the sample standard deviation of the
estimator's influence function (its i.i.d. representation, including the term from the
estimated censoring distribution) over sqrt(n); the CI is AUC +/- z SE, as
``confint(timeROC)``'s pointwise interval.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from gastrorad.stats.survival._checks import check_survival


def censoring_survival_ipcw(time: np.ndarray, event: np.ndarray, at, *, left: bool) -> np.ndarray:
    """Kaplan-Meier estimate of the censoring survival G at the times ``at``, deaths leaving
    the risk set before censorings at the same time (factor 1 - c(u) / (n(u) - d(u))):
    G(at-) with ``left``, else G(at). As ``pec::ipcw(method = "marginal")`` (subject times
    with ``subjectTimesLag = 1``, and the horizons)."""
    from gastrorad.stats.survival.concordance import censoring_survival_deaths_first
    at = np.asarray(at, float)
    if left:
        return censoring_survival_deaths_first(time, event, at)
    # G(at) = G(u-) at the first follow-up time u after ``at``
    ut = np.unique(time)
    nxt = np.searchsorted(ut, at, side="right")
    g_all = censoring_survival_deaths_first(time, event, np.append(ut, np.inf))
    return g_all[nxt]


def _censoring_martingale_integral(time_sorted: np.ndarray, censored: np.ndarray):
    """The pieces of timeROC's i.i.d. representation of the censoring Kaplan-Meier estimator
    (observations in time order, each its own step, as timeROC does): the integral over
    [0, T_r] of dM_C,k(u) / P(T >= u) equals ``jump[k] * (first[k] <= r) - A[min(r, k)]``
    (0-based r, k), returned as (jump, first, A)."""
    n = len(time_sorted)
    pos = np.arange(n)
    at_risk = (n - pos) / n                         # P(T >= u) at the r-th sorted time
    cum = np.cumsum(censored / (n - pos) / at_risk)  # compensator increments over the risk fraction
    first = np.searchsorted(time_sorted, time_sorted, side="left")
    jump = censored / at_risk[first]
    return jump, first, cum


def _auc_se(event, risk, g_left, g_t, case, ctrl, time):
    """timeROC's SE of AUC(t) (``compute_iid_decomposition_survival``), in O(n log n) after the
    O(cases x controls) pair counts. Arrays in time order (stable, as R's ``order``)."""
    n = len(time)
    wc = np.where(case, 1.0 / g_left, 0.0)          # 1 / G(T_i-) for cases, times n of timeROC's weights
    f01 = wc.sum() / n                              # cumulative incidence at t
    n_ctrl = ctrl.sum()
    st = n_ctrl / (g_t * n)                         # survival at t
    # pair kernel h_ij = 1(T_j > t) [1(M_i > M_j) + 1/2 1(M_i = M_j)] / (G(T_i-) G(t)) for case i, control j
    col = np.zeros(n)                               # sum over controls, per case
    row = np.zeros(n)                               # sum over cases, per control
    ci, cj = np.flatnonzero(case), np.flatnonzero(ctrl)
    step = max(1, 4_000_000 // max(len(cj), 1))
    for s in range(0, len(ci), step):
        ii = ci[s:s + step]
        k = ((risk[ii][:, None] > risk[cj][None, :]) + 0.5 * (risk[ii][:, None] == risk[cj][None, :]))
        k = k * (wc[ii][:, None] / g_t)
        col[ii] = k.sum(axis=1)
        row[cj] += k.sum(axis=0)
    ht = col.sum() / n ** 2
    sup = ctrl / (n_ctrl / n)
    # influence of the censoring estimate: sum_i b_i (1 + MatInt[i, k]) for every k
    b = col / n - ht * wc / f01
    jump, first, cum = _censoring_martingale_integral(time, (event == 0).astype(float))
    tail_b = np.concatenate([np.cumsum(b[::-1])[::-1], [0.0]])  # sum_{i >= r} b_i
    head_ba = np.cumsum(b * cum)                                 # sum_{i <= k} b_i A_i
    after_k = tail_b[np.arange(n) + 1]                           # sum_{i > k} b_i
    bm = jump * tail_b[first] - (head_ba + cum * after_k)
    term_k = (b.sum() + bm) / (f01 * st)
    term_j = (row - n * ht) / (f01 * st)
    term_i = (col - n * ht * (sup + (wc - f01) / f01)) / (f01 * st)
    infl = (term_k + term_j + term_i) / n
    return float(np.std(infl, ddof=1) / np.sqrt(n))


def time_dependent_auc(time, event, risk, horizons, *, se: bool = True, level: float = 0.95) -> pd.DataFrame:
    """AUC(t) at each horizon t, mirroring ``timeROC::timeROC(..., weighting = "marginal",
    iid = TRUE)`` and ``confint``: columns horizon, auc, cases (T < t with an event),
    controls (T > t), and with ``se`` its standard error and the pointwise CI at ``level``
    (AUC +/- z SE). NaN where there is no case or no control."""
    time, event, (risk,) = check_survival(time, event, risk)
    risk = risk.astype(float)
    if np.isnan(risk).any():
        raise ValueError("risk has missing values")
    order = np.argsort(time, kind="stable")
    time, event, risk = time[order], event[order], risk[order]
    g_left = censoring_survival_ipcw(time, event, time, left=True)
    z = stats.norm.ppf(1 - (1 - level) / 2)
    rows = []
    for t in np.atleast_1d(np.asarray(horizons, float)):
        case = (time < t) & (event == 1)
        ctrl = time > t
        row = {"horizon": float(t), "auc": np.nan, "cases": int(case.sum()), "controls": int(ctrl.sum())}
        if se:
            row.update(se=np.nan, lower=np.nan, upper=np.nan)
        if case.any() and ctrl.any():
            rc, wc = risk[case], 1.0 / g_left[case]
            rk = np.sort(risk[ctrl])
            below = np.searchsorted(rk, rc, side="left")
            ties = np.searchsorted(rk, rc, side="right") - below
            row["auc"] = float(np.sum(wc * (below + 0.5 * ties)) / (np.sum(wc) * len(rk)))
            if se:
                g_t = float(censoring_survival_ipcw(time, event, [t], left=False)[0])
                s = _auc_se(event, risk, g_left, g_t, case, ctrl, time)
                row.update(se=s, lower=row["auc"] - z * s, upper=row["auc"] + z * s)
        rows.append(row)
    return pd.DataFrame(rows)
