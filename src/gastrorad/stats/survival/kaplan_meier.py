"""Kaplan-Meier estimates as ``survival::survfit(Surv(time, event) ~ 1)``.

Greenwood's variance of log S: se = sqrt(sum d / (n (n - d))) (survfit's ``std.err``);
confidence intervals on the log scale by default (``conf.type = "log"``), or "log-log"
or "plain". The median is the first time S(t) <= 0.5; when S equals 0.5 exactly over a
flat stretch it is the midpoint between that event time and the next time S drops (a
censoring time in between does not count), as ``quantile.survfit``; its CI applies the
same rule to the confidence limits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from gastrorad.stats.survival._checks import check_survival


@dataclass
class KaplanMeier:
    table: pd.DataFrame  # time, n_risk, n_event, n_censor, surv, std_err, lower, upper
    median: float
    median_lower: float
    median_upper: float
    conf_type: str
    level: float

    def survival_at(self, times) -> np.ndarray:
        """S(t) at each time (right-continuous step function, 1 before the first time)."""
        t = self.table["time"].to_numpy()
        s = np.concatenate([[1.0], self.table["surv"].to_numpy()])
        return s[np.searchsorted(t, np.asarray(times, float), side="right")]

    def at_risk(self, times) -> np.ndarray:
        """Number at risk at each time (as survfit's summary ``n.risk`` at those times)."""
        t = self.table["time"].to_numpy()
        n_risk = self.table["n_risk"].to_numpy()
        idx = np.searchsorted(t, np.asarray(times, float), side="left")
        last = n_risk[-1] - self.table["n_event"].iloc[-1] - self.table["n_censor"].iloc[-1]
        return np.where(idx < len(t), n_risk[np.minimum(idx, len(t) - 1)], last)

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame([{"n": int(self.table.n_risk.iloc[0]), "events": int(self.table.n_event.sum()),
                              "median": self.median, "median_lower": self.median_lower,
                              "median_upper": self.median_upper}])


def _quantile_time(times: np.ndarray, surv: np.ndarray, p: float = 0.5) -> float:
    """Time at which 1 - S reaches ``p``, as survival's ``quantile.survfit`` (its ``findq``).

    Only the first time of each distinct value of S counts (rows where S does not move, e.g.
    censoring times, drop out; missing values too). The quantile is the first time with
    S <= 1 - p; when S equals 1 - p exactly (within sqrt(machine eps)) it is the midpoint
    between that time and the time S next drops, or the last follow-up time when S never
    drops again.
    """
    tol = np.sqrt(np.finfo(float).eps)
    times, surv = np.asarray(times, float), np.asarray(surv, float)
    xmax = times[-1] if len(times) else 0.0
    x = np.concatenate([[0.0], times])
    y = np.concatenate([[0.0], 1.0 - surv])
    ok = ~np.isnan(y)
    x, y = x[ok], y[ok]
    if y.max() < p:
        return np.nan
    first = np.concatenate([[True], y[1:] != y[:-1]]) if len(y) else np.array([], bool)
    x, y = x[first], y[first]
    i1 = int(np.searchsorted(y + tol, p, side="left"))
    i2 = int(np.searchsorted(y - tol, p, side="left"))
    if p == 0:
        return float(x[0])
    if abs(p - y[-1]) < tol:
        return float((x[i1] + xmax) / 2)
    if i1 >= len(x) or i2 >= len(x):
        return np.nan
    return float((x[i1] + x[i2]) / 2)


def kaplan_meier(time, event, *, conf_type: str = "log", level: float = 0.95) -> KaplanMeier:
    """Kaplan-Meier curve with Greenwood CIs (mirrors ``survfit(Surv(time, event) ~ 1)``)."""
    time, event, _ = check_survival(time, event)
    ut, inv = np.unique(time, return_inverse=True)
    d = np.bincount(inv, weights=event, minlength=len(ut))
    c = np.bincount(inv, weights=1 - event, minlength=len(ut))
    leaving = d + c
    n_risk = len(time) - np.concatenate([[0], np.cumsum(leaving)[:-1]])
    surv = np.cumprod(1 - d / n_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(d > 0, d / (n_risk * (n_risk - d)), 0.0)
    se = np.sqrt(np.cumsum(terms))  # se of log S (inf once S hits 0)
    z = stats.norm.ppf(1 - (1 - level) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        if conf_type == "log":
            lower, upper = surv * np.exp(-z * se), np.minimum(surv * np.exp(z * se), 1.0)
        elif conf_type == "log-log":
            loglog = np.log(-np.log(surv))
            sel = se / np.log(surv)
            lower, upper = np.exp(-np.exp(loglog - z * sel)), np.exp(-np.exp(loglog + z * sel))
        elif conf_type == "plain":
            lower, upper = np.clip(surv - z * se * surv, 0, 1), np.clip(surv + z * se * surv, 0, 1)
        else:
            raise ValueError("conf_type must be 'log', 'log-log' or 'plain'")
    zero = surv <= 0
    lower, upper = np.where(zero, np.nan, lower), np.where(zero, np.nan, upper)
    table = pd.DataFrame({"time": ut, "n_risk": n_risk.astype(int), "n_event": d.astype(int),
                          "n_censor": c.astype(int), "surv": surv, "std_err": se, "lower": lower, "upper": upper})
    med = _quantile_time(ut, surv)
    med_lo = _quantile_time(ut, lower)
    med_hi = _quantile_time(ut, upper)
    return KaplanMeier(table, med, med_lo, med_hi, conf_type, level)
