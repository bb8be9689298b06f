"""Calibration of predicted probabilities.

- :func:`calibration_statistics` mirrors ``rms::val.prob``: intercept and slope of the
  logistic recalibration ``logit P(y) = a + b logit(p)``, Brier score, Spiegelhalter's z
  and P, and Emax / E90 / Eavg from a ``lowess(p, y, iter = 0)`` curve.
- :func:`hosmer_lemeshow`: g groups at the quantiles of p (``cut(p, quantile(p,
  0:g/g), include.lowest=TRUE)``, as ``ResourceSelection::hoslem.test``), chi-square with
  g - 2 df. The seeds report it; slope, intercept and the flexible curve are the modern
  primary figures.
- :func:`calibration_curve`: observed vs predicted by quantile bins, and the lowess curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from gastrorad.stats._checks import check_binary

_EPS = 1e-12


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _logistic_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood intercept and slope of logit P(y) = a + b x (Newton-Raphson)."""
    X = np.column_stack([np.ones_like(x), x])
    beta = np.zeros(2)
    for _ in range(100):
        eta = X @ beta
        mu = 1 / (1 + np.exp(-eta))
        w = mu * (1 - mu)
        grad = X.T @ (y - mu)
        hess = X.T @ (X * w[:, None])
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.max(np.abs(step)) < 1e-12:
            break
    return float(beta[0]), float(beta[1])


def lowess_curve(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R's ``lowess(p, y, iter = 0)`` (f = 2/3, delta = 1% of the range): sorted x, fitted y."""
    from statsmodels.nonparametric.smoothers_lowess import lowess
    delta = 0.01 * (p.max() - p.min())
    fit = lowess(y, p, frac=2 / 3, it=0, delta=delta, return_sorted=True)
    return fit[:, 0], fit[:, 1]


@dataclass
class CalibrationStatistics:
    intercept: float
    slope: float
    brier: float
    spiegelhalter_z: float
    spiegelhalter_p: float
    emax: float
    e90: float
    eavg: float
    n: int

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame([self.__dict__])


def calibration_statistics(y, p) -> CalibrationStatistics:
    """Calibration statistics of probabilities ``p`` (mirrors ``rms::val.prob``)."""
    y, (p,) = check_binary(y, p)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("predicted probabilities must lie in [0, 1]")
    a, b = _logistic_fit(_logit(p), y.astype(float))
    brier = float(np.mean((p - y) ** 2))
    z = float(np.sum((y - p) * (1 - 2 * p)) / np.sqrt(np.sum((1 - 2 * p) ** 2 * p * (1 - p))))
    xs, fitted = lowess_curve(p, y.astype(float))
    cal = np.interp(p, xs, fitted)  # R: approx(lowess, xout = p, ties = mean)
    err = np.abs(cal - p)
    return CalibrationStatistics(a, b, brier, z, float(2 * stats.norm.sf(abs(z))), float(err.max()),
                                 float(np.quantile(err, 0.9)), float(err.mean()), len(y))


@dataclass
class HosmerLemeshow:
    statistic: float
    df: int
    p_value: float
    table: pd.DataFrame

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame([{"statistic": self.statistic, "df": self.df, "p": self.p_value}])


def hosmer_lemeshow(y, p, g: int = 10) -> HosmerLemeshow:
    """Hosmer-Lemeshow goodness-of-fit test with ``g`` quantile groups and g - 2 df
    (as ``ResourceSelection::hoslem.test(y, p, g)``)."""
    y, (p,) = check_binary(y, p)
    breaks = np.quantile(p, np.linspace(0, 1, g + 1))
    breaks = np.unique(breaks)
    if len(breaks) < 2:  # R's cut() stops too ("'breaks' are not unique")
        raise ValueError("the predictions take a single value: no Hosmer-Lemeshow groups")
    # cut(..., include.lowest = TRUE): intervals (b_i, b_{i+1}], the first closed on the left
    group = np.clip(np.searchsorted(breaks, p, side="left") - 1, 0, len(breaks) - 2)
    rows = []
    for k in range(len(breaks) - 1):
        m = group == k
        rows.append({"group": k + 1, "n": int(m.sum()), "observed_1": float(y[m].sum()), "expected_1": float(p[m].sum()),
                     "observed_0": float((1 - y[m]).sum()), "expected_0": float((1 - p[m]).sum())})
    t = pd.DataFrame(rows)
    chi = float((((t.observed_1 - t.expected_1) ** 2) / t.expected_1).sum()
                + (((t.observed_0 - t.expected_0) ** 2) / t.expected_0).sum())
    df = g - 2
    return HosmerLemeshow(chi, df, float(stats.chi2.sf(chi, df)), t)


def calibration_curve(y, p, bins: int = 10) -> dict[str, pd.DataFrame]:
    """Binned (quantile groups: mean predicted vs observed rate with exact CI) and smoothed
    (lowess) calibration curves, as drawn by ``rms::val.prob``."""
    from gastrorad.stats.cutoff import clopper_pearson
    y, (p,) = check_binary(y, p)
    hl = hosmer_lemeshow(y, p, g=bins)
    binned = []
    breaks = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    group = np.clip(np.searchsorted(breaks, p, side="left") - 1, 0, len(breaks) - 2)
    for k in range(len(breaks) - 1):
        m = group == k
        lo, hi = clopper_pearson(int(y[m].sum()), int(m.sum()))
        binned.append({"predicted": float(p[m].mean()), "observed": float(y[m].mean()), "lower": lo, "upper": hi,
                       "n": int(m.sum())})
    xs, fitted = lowess_curve(p, y.astype(float))
    return {"binned": pd.DataFrame(binned), "smoothed": pd.DataFrame({"predicted": xs, "observed": fitted}),
            "hosmer_lemeshow": hl.summary()}
