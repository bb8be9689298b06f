"""Kaplan-Meier estimates as ``survival::survfit(Surv(time, event) ~ 1)``.

:func:`kaplan_meier_by_group` gives one curve per group (``survfit(Surv ~ group)``);
``KaplanMeier.at(times)`` the estimates with CIs at chosen times (``summary(fit, times)``).

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

    def at(self, times) -> pd.DataFrame:
        """Estimates at chosen times, as ``summary(survfit(...), times = times, extend = TRUE)``:
        number at risk at t, events in (previous time, t], S(t), its standard error (of S, as
        summary.survfit reports it: S x the Greenwood SE of log S) and the CI limits. Before the
        first time S = 1; past the last follow-up the last values carry forward with 0 at risk."""
        times = np.sort(np.atleast_1d(np.asarray(times, float)))
        tab = self.table
        t = tab["time"].to_numpy()
        idx = np.searchsorted(t, times, side="right") - 1
        cum_events = np.concatenate([[0], np.cumsum(tab["n_event"].to_numpy())])
        events = np.diff(np.concatenate([[0], cum_events[idx + 1]]))

        def pick(col, before):
            v = tab[col].to_numpy(float)
            return np.where(idx >= 0, v[np.maximum(idx, 0)], before)
        surv = pick("surv", 1.0)
        with np.errstate(invalid="ignore"):  # S = 0: its SE is NaN, as R
            se = surv * pick("std_err", 0.0)
        return pd.DataFrame({"time": times, "n_risk": self.at_risk(times).astype(int), "n_event": events.astype(int),
                             "surv": surv, "std_err": se, "lower": pick("lower", 1.0),
                             "upper": pick("upper", 1.0)})

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


def kaplan_meier_by_group(time, event, group, times=None, *, conf_type: str = "log",
                          level: float = 0.95) -> tuple[dict, pd.DataFrame]:
    """One Kaplan-Meier curve per group, as ``survfit(Surv(time, event) ~ group)``: returns
    ({group: KaplanMeier}, table). The table has one row per group with n, events, the
    median and its CI (``summary(fit)$table``), or, with ``times``, one row per group and time
    with the estimates and CIs at those times (``summary(fit, times = times, extend =
    TRUE)``). Groups in sorted order, as R's factor levels."""
    time, event, (group,) = check_survival(time, event, group)
    levels = sorted(pd.unique(group), key=str)
    curves = {g: kaplan_meier(time[group == g], event[group == g], conf_type=conf_type, level=level) for g in levels}
    if times is None:
        table = pd.concat([c.summary().assign(group=g) for g, c in curves.items()], ignore_index=True)
    else:
        table = pd.concat([c.at(times).assign(group=g) for g, c in curves.items()], ignore_index=True)
    return curves, table[["group", *[c for c in table.columns if c != "group"]]]


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
