"""Cox proportional hazards: fitting (lifelines, Efron ties as ``survival::coxph``) and the
proportional-hazards test of ``survival::cox.zph`` (survival >= 3.0).

cox.zph is a score test: each covariate x_k is augmented by g(t) x_k, with g the
transformed time (default ``"km"``: 1 - the left-continuous Kaplan-Meier estimate at the
event time), and the score U and information I of the augmented model are evaluated at
(beta_hat, 0), using the same tie handling as the fit (Efron). Per covariate the statistic
is U_k^2 [I^-1]_kk on the block (beta, gamma_k); the global test uses all gamma at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from gastrorad.stats.survival._checks import check_survival
from gastrorad.stats.survival.kaplan_meier import kaplan_meier


@dataclass
class CoxResult:
    """A fitted Cox model: coefficient table, log-likelihood and the lifelines fitter."""

    table: pd.DataFrame  # covariate, coef, hr, se, z, p, hr_lower, hr_upper
    loglik: float
    n: int
    events: int
    fitter: object
    data: pd.DataFrame
    time_col: str
    event_col: str
    covariates: list[str]
    ties: str = "efron"

    @property
    def coef(self) -> np.ndarray:
        return self.table["coef"].to_numpy()

    def linear_predictor(self, df: pd.DataFrame) -> np.ndarray:
        """x' beta (uncentred, as ``predict(coxph, type = "lp", reference = "zero")``)."""
        return df[self.covariates].to_numpy(float) @ self.coef

    def baseline_hazard(self, times=None, *, ties: str | None = None) -> pd.DataFrame:
        """Cumulative baseline hazard H0(t) at covariates 0, as ``basehaz(fit, centered =
        FALSE)`` (``survfit.coxph`` with all covariates 0): the Efron estimator for an Efron fit
        (survfit's default ``ctype = 2``, also what ``rms::cph``'s ``Survival()`` uses), the
        Breslow (Nelson-Aalen type) one for a Breslow fit or with ``ties="breslow"``
        (``ctype = 1``). ``times`` default: every distinct follow-up time, as basehaz."""
        d = self.data
        time = d[self.time_col].to_numpy(float)
        at = np.unique(time) if times is None else np.atleast_1d(np.asarray(times, float))
        h = cox_baseline_hazard(time, d[self.event_col].to_numpy(int), self.linear_predictor(d), at,
                                ties=ties or self.ties)
        return pd.DataFrame({"time": at, "hazard": h})

    def baseline_survival(self, times, *, ties: str | None = None) -> np.ndarray:
        """S0(t) = exp(-H0(t)) at covariates 0 (``survfit.coxph``'s default ``stype = 2``)."""
        return np.exp(-self.baseline_hazard(times, ties=ties).hazard.to_numpy())

    def predict_survival(self, df: pd.DataFrame, times, *, ties: str | None = None) -> pd.DataFrame:
        """Predicted survival S(t | x) = exp(-H0(t) exp(x' beta)) of each row of ``df`` (rows) at
        each of ``times`` (columns), as ``summary(survfit(fit, newdata = df), times = times)``
        and ``rms::Survival(cph)(times, lp)``."""
        times = np.atleast_1d(np.asarray(times, float))
        h0 = self.baseline_hazard(times, ties=ties).hazard.to_numpy()
        risk = np.exp(self.linear_predictor(df))
        return pd.DataFrame(np.exp(-np.outer(risk, h0)), index=df.index, columns=list(times))

    def summary(self) -> pd.DataFrame:
        return self.table


def fit_cox(df: pd.DataFrame, time_col: str, event_col: str, covariates: list[str], *, level: float = 0.95,
            penalizer: float = 0.0) -> CoxResult:
    """Fit a Cox model with Efron ties (lifelines ``CoxPHFitter``; mirrors ``survival::coxph``).

    Rows with a missing value in any used column are dropped (as R's ``na.omit``).
    """
    from lifelines import CoxPHFitter

    data = df[[time_col, event_col, *covariates]].dropna().reset_index(drop=True)
    check_survival(data[time_col], data[event_col])
    cph = CoxPHFitter(penalizer=penalizer, alpha=1 - level)
    cph.fit(data, duration_col=time_col, event_col=event_col, fit_options={"precision": 1e-12, "max_steps": 200})
    s = cph.summary
    z = stats.norm.ppf(1 - (1 - level) / 2)
    coef, se = s["coef"].to_numpy(), s["se(coef)"].to_numpy()
    table = pd.DataFrame({"covariate": covariates, "coef": coef, "hr": np.exp(coef), "se": se, "z": coef / se,
                          "p": 2 * stats.norm.sf(np.abs(coef / se)), "hr_lower": np.exp(coef - z * se),
                          "hr_upper": np.exp(coef + z * se)})
    return CoxResult(table, float(cph.log_likelihood_), len(data), int(data[event_col].sum()), cph, data, time_col,
                     event_col, list(covariates))


def cox_baseline_hazard(time, event, lp, at, *, ties: str = "efron") -> np.ndarray:
    """Cumulative baseline hazard at ``lp = 0`` evaluated at the times ``at`` (step function,
    0 before the first death), from a Cox fit's linear predictors ``lp``. At a death time
    with d deaths, risk-set total R and deaths' total D of exp(lp), the increment is
    sum_{k<d} 1 / (R - (k / d) D) (Efron, ``survfit.coxph(ctype = 2)``) or d / R (Breslow,
    ``ctype = 1``)."""
    if ties not in ("efron", "breslow"):
        raise ValueError("ties must be 'efron' or 'breslow'")
    time, event, (lp,) = check_survival(time, event, lp)
    lp = lp.astype(float)
    shift = lp.mean()
    w = np.exp(lp - shift)  # centred for range; undone below
    ut, inv = np.unique(time, return_inverse=True)
    tot = np.bincount(inv, weights=w, minlength=len(ut))
    risk = np.cumsum(tot[::-1])[::-1]
    dead_w = np.bincount(inv, weights=w * event, minlength=len(ut))
    d = np.bincount(inv, weights=event, minlength=len(ut)).astype(int)
    inc = np.zeros(len(ut))
    for j in np.flatnonzero(d > 0):
        k = np.arange(d[j]) / d[j] if ties == "efron" else np.zeros(d[j])
        inc[j] = np.sum(1.0 / (risk[j] - k * dead_w[j]))
    cum = np.concatenate([[0.0], np.cumsum(inc)]) * np.exp(-shift)
    return cum[np.searchsorted(ut, np.asarray(at, float), side="right")]


def _km_transform(time: np.ndarray, event: np.ndarray, at: np.ndarray) -> np.ndarray:
    """1 - S(t-) at each time in ``at`` (left-continuous Kaplan-Meier)."""
    km = kaplan_meier(time, event)
    t = km.table["time"].to_numpy()
    s = np.concatenate([[1.0], km.table["surv"].to_numpy()])
    return 1.0 - s[np.searchsorted(t, at, side="left")]


def efron_score_information(time, event, x, beta, g=None):
    """Efron score and information of a Cox model at ``beta`` for covariates ``x`` (n, p),
    optionally augmented by g(t) x (``g``: value per distinct event time, in time order).

    Returns (U, I) of size p or 2p.
    """
    n, p = x.shape
    w = np.exp(x @ beta)
    event_times = np.unique(time[event == 1])
    q = 2 * p if g is not None else p
    U, I = np.zeros(q), np.zeros((q, q))
    order = np.argsort(-time, kind="stable")
    ts, es, xs, ws = time[order], event[order], x[order], w[order]
    # risk-set sums accumulated from the longest time down
    s0, s1, s2 = 0.0, np.zeros(p), np.zeros((p, p))
    pos = 0
    for ti, t in enumerate(event_times[::-1]):
        while pos < n and ts[pos] >= t:
            s0 += ws[pos]
            s1 += ws[pos] * xs[pos]
            s2 += ws[pos] * np.outer(xs[pos], xs[pos])
            pos += 1
        dead = (ts[:pos] == t) & (es[:pos] == 1)
        d = int(dead.sum())
        xd, wd = xs[:pos][dead], ws[:pos][dead]
        d0, d1, d2 = wd.sum(), wd @ xd, (xd * wd[:, None]).T @ xd
        u, info = xd.sum(axis=0), np.zeros((p, p))
        for l in range(d):
            f = l / d
            a0, a1, a2 = s0 - f * d0, s1 - f * d1, s2 - f * d2
            m = a1 / a0
            u = u - m
            info += a2 / a0 - np.outer(m, m)
        if g is None:
            U += u
            I += info
        else:
            gt = g[len(event_times) - 1 - ti]
            U += np.concatenate([u, gt * u])
            I += np.block([[info, gt * info], [gt * info, gt * gt * info]])
    return U, I


@dataclass
class ZphResult:
    table: pd.DataFrame  # covariate (and GLOBAL), chisq, df, p

    def summary(self) -> pd.DataFrame:
        return self.table


def cox_zph(result: CoxResult, transform: str = "km") -> ZphResult:
    """Test of proportional hazards (mirrors ``survival::cox.zph(fit, transform)``, terms = one
    column each). ``transform``: "km" (default), "identity", "log" or "rank" (R's
    ``rank(times)``: all follow-up times ranked, censored ones included, ties averaged); the
    transformed time is centred over the deaths, as R."""
    d = result.data
    time = d[result.time_col].to_numpy(float)
    event = d[result.event_col].to_numpy(int)
    x = d[result.covariates].to_numpy(float)
    et = np.unique(time[event == 1])
    if transform == "km":
        g = _km_transform(time, event, et)
    elif transform == "identity":
        g = et.copy()
    elif transform == "log":
        g = np.log(et)
    elif transform == "rank":
        # rank(times) in R: every follow-up time ranked, censored ones included (ties averaged);
        # tied times share their rank, so each death time takes the rank of its rows
        st = np.sort(time)
        g = stats.rankdata(st)[np.searchsorted(st, et)]
    else:
        raise ValueError("transform must be 'km', 'identity', 'log' or 'rank'")
    g = g - np.mean(np.repeat(g, [int(np.sum((time == t) & (event == 1))) for t in et]))
    U, I = efron_score_information(time, event, x, result.coef, g)
    p = x.shape[1]
    rows = []
    for k in range(p):
        idx = list(range(p)) + [p + k]
        sub = I[np.ix_(idx, idx)]
        u = np.zeros(p + 1)
        u[-1] = U[p + k]
        u[:p] = U[:p]
        chi = float(u @ np.linalg.solve(sub, u))
        rows.append({"covariate": result.covariates[k], "chisq": chi, "df": 1, "p": float(stats.chi2.sf(chi, 1))})
    chi = float(U @ np.linalg.solve(I, U))
    rows.append({"covariate": "GLOBAL", "chisq": chi, "df": p, "p": float(stats.chi2.sf(chi, p))})
    return ZphResult(pd.DataFrame(rows))
