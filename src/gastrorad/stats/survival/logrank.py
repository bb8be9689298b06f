"""Log-rank test for k groups, as ``survival::survdiff(Surv(time, event) ~ group)`` (rho = 0)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from gastrorad.stats.survival._checks import check_survival


@dataclass
class LogrankResult:
    table: pd.DataFrame  # group, n, observed, expected, (O-E)^2/E, (O-E)^2/V
    statistic: float
    df: int
    p_value: float

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame([{"chisq": self.statistic, "df": self.df, "p": self.p_value}])


def logrank_test(time, event, group) -> LogrankResult:
    """Chi-square = (O - E)' V^- (O - E) over the first k - 1 groups, k - 1 df."""
    time, event, (group,) = check_survival(time, event, group)
    levels = sorted(pd.unique(group), key=str)
    if len(levels) < 2:
        raise ValueError("the log-rank test needs at least two groups")
    g = pd.Categorical(group, categories=levels).codes
    k = len(levels)
    obs = np.zeros(k)
    exp = np.zeros(k)
    var = np.zeros((k, k))
    order = np.argsort(time)
    t_sorted, g_sorted, e_sorted = time[order], g[order], event[order]
    n_at = np.array([np.sum(g == j) for j in range(k)], dtype=float)
    at_risk = n_at.copy()
    # Walk through the distinct times in order; the risk sets shrink as time passes.
    all_times = np.unique(t_sorted)
    pos = 0
    for t in all_times:
        end = pos
        while end < len(t_sorted) and t_sorted[end] == t:
            end += 1
        gs, es = g_sorted[pos:end], e_sorted[pos:end]
        d_j = np.bincount(gs[es == 1], minlength=k).astype(float)
        d = d_j.sum()
        n = at_risk.sum()
        if d > 0:
            obs += d_j
            exp += d * at_risk / n
            if n > 1:
                p = at_risk / n
                var += d * (n - d) / (n - 1) * (np.diag(p) - np.outer(p, p))
        at_risk -= np.bincount(gs, minlength=k)
        pos = end
    diff = obs - exp
    stat = float(diff[:-1] @ np.linalg.pinv(var[:-1, :-1]) @ diff[:-1])
    df = k - 1
    table = pd.DataFrame({"group": levels, "n": n_at.astype(int), "observed": obs, "expected": exp,
                          "(O-E)^2/E": diff ** 2 / exp, "(O-E)^2/V": diff ** 2 / np.diag(var)})
    return LogrankResult(table, stat, df, float(stats.chi2.sf(stat, df)))
