"""Concordance of a risk score with survival.

- :func:`harrell_c` mirrors ``survival::concordance(Surv(time, event) ~ risk, reverse =
  TRUE)``: a pair is comparable when the shorter time is an event (a censored time tied
  with an event time counts as longer); ties in the score count 1/2; tied event times
  are not comparable. The standard error is the infinitesimal jackknife, as survival's.
- :func:`uno_c` weights each comparable pair by 1 / G(t_i-)^2, G the Kaplan-Meier
  estimate of the censoring distribution (Uno et al. 2011), optionally truncated at tau,
  as ``survival::concordance(timewt = "n/G2")``.

Higher ``risk`` means shorter expected survival.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from gastrorad.stats.survival._checks import check_survival


@dataclass
class ConcordanceResult:
    c: float
    se: float
    lower: float
    upper: float
    concordant: float
    discordant: float
    tied_risk: float
    comparable: float
    influence: np.ndarray | None = None  # dC/dw_k per patient (infinitesimal jackknife)

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame([{k: v for k, v in self.__dict__.items() if k != "influence"}])


def _pair_counts(time, event, risk, weight_of_event=None):
    """Per-observation weighted counts of concordant, discordant and risk-tied comparable pairs.

    O(n^2 / chunk) vectorised: for every event i, the comparable partners j are those with
    t_j > t_i, or t_j == t_i and j censored. Returns per-observation arrays (each pair
    credited to both members) and totals.
    """
    n = len(time)
    wi = np.ones(n) if weight_of_event is None else weight_of_event
    conc, disc, tied = np.zeros(n), np.zeros(n), np.zeros(n)
    events = np.flatnonzero(event == 1)
    step = max(1, 4_000_000 // max(n, 1))
    for s in range(0, len(events), step):
        ii = events[s:s + step]
        ti, ri = time[ii][:, None], risk[ii][:, None]
        comp = (time[None, :] > ti) | ((time[None, :] == ti) & (event[None, :] == 0))
        w = wi[ii][:, None] * comp
        c = w * (ri > risk[None, :])
        d = w * (ri < risk[None, :])
        t = w * (ri == risk[None, :])
        conc[ii] += c.sum(axis=1)
        disc[ii] += d.sum(axis=1)
        tied[ii] += t.sum(axis=1)
        conc += c.sum(axis=0)
        disc += d.sum(axis=0)
        tied += t.sum(axis=0)
    totals = conc.sum() / 2, disc.sum() / 2, tied.sum() / 2
    return conc, disc, tied, totals


def _result(conc, disc, tied, totals, level) -> ConcordanceResult:
    C_, D_, T_ = totals
    comparable = C_ + D_ + T_
    c = (C_ + T_ / 2) / comparable
    # infinitesimal jackknife: dC/dw_k = (N_k - c D_k) / D
    dk = (conc + tied / 2 - c * (conc + disc + tied)) / comparable
    se = float(np.sqrt(np.sum(dk ** 2)))
    z = stats.norm.ppf(1 - (1 - level) / 2)
    return ConcordanceResult(float(c), se, float(c - z * se), float(c + z * se), float(C_), float(D_), float(T_),
                             float(comparable), dk)


def harrell_c(time, event, risk, *, level: float = 0.95) -> ConcordanceResult:
    """Harrell's C of ``risk`` with its infinitesimal-jackknife SE and normal CI."""
    time, event, (risk,) = check_survival(time, event, risk)
    risk = risk.astype(float)
    conc, disc, tied, totals = _pair_counts(time, event, risk)
    return _result(conc, disc, tied, totals, level)


def censoring_survival_deaths_first(time, event, at) -> np.ndarray:
    """G(t-) of the censoring distribution when deaths at a time precede censorings there:
    each censoring factor is 1 - c(u) / (n(u) - d(u)). This is the G that
    ``survival::concordance(timewt = "n/G2")`` uses."""
    ut = np.unique(time)
    n = len(time) - np.searchsorted(np.sort(time), ut, side="left")
    idx = np.searchsorted(ut, time)
    d = np.bincount(idx, weights=event, minlength=len(ut))
    c = np.bincount(idx, weights=1 - event, minlength=len(ut))
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(c > 0, 1 - c / (n - d), 1.0)
    g = np.concatenate([[1.0], np.cumprod(factor)])
    return g[np.searchsorted(ut, np.asarray(at, float), side="left")]


def uno_c(time, event, risk, *, tau: float | None = None, level: float = 0.95) -> ConcordanceResult:
    """Uno's C: comparable pairs weighted by 1 / G(t_i-)^2 (deaths before censorings at tied
    times), events after ``tau`` excluded; mirrors ``survival::concordance(timewt = "n/G2",
    ymax = tau)``, SE included (infinitesimal jackknife with G held fixed, as survival)."""
    time, event, (risk,) = check_survival(time, event, risk)
    risk = risk.astype(float)
    g = censoring_survival_deaths_first(time, event, time)
    w = np.where(g > 0, 1.0 / g ** 2, 0.0)
    if tau is not None:
        w = np.where(time <= tau, w, 0.0)
    conc, disc, tied, totals = _pair_counts(time, event, risk, weight_of_event=w)
    return _result(conc, disc, tied, totals, level)


def compare_c(time, event, risks: dict[str, np.ndarray], reference: str | None = None, *, level: float = 0.95,
              uno: bool = False) -> pd.DataFrame:
    """Harrell's (or Uno's) C of several risk scores on the same patients, each with its CI,
    and the difference from ``reference`` with a z test from the joint infinitesimal-jackknife
    covariance (as ``survival::concordance(fit1, fit2)`` and a contrast of its ``var``)."""
    names = list(risks)
    reference = names[0] if reference is None else reference
    fn = uno_c if uno else harrell_c
    res = {k: fn(time, event, risks[k], level=level) for k in names}
    ref = res[reference]
    rows = []
    for k in names:
        r = res[k]
        row = {"model": k, "c": r.c, "se": r.se, "lower": r.lower, "upper": r.upper, "difference": np.nan,
               "z": np.nan, "p": np.nan}
        if k != reference:
            diff = r.c - ref.c
            se = float(np.sqrt(np.sum((r.influence - ref.influence) ** 2)))
            z = diff / se if se > 0 else np.nan
            row.update(difference=diff, z=z, p=float(2 * stats.norm.sf(abs(z))) if np.isfinite(z) else np.nan)
        rows.append(row)
    return pd.DataFrame(rows)
