"""Cox proportional hazards: fitting (``survival::coxph``'s Newton-Raphson, Efron or Breslow ties),
baseline hazard and predicted survival (``basehaz``, ``survfit.coxph``), and the
proportional-hazards test of ``survival::cox.zph`` (survival >= 3.0).

cox.zph is a score test: each covariate x_k is augmented by g(t) x_k, with g the
transformed time (default ``"km"``: 1 - the left-continuous Kaplan-Meier estimate at the
event time), and the score U and information I of the augmented model are evaluated at
(beta_hat, 0), using the same tie handling as the fit. Per covariate the statistic
is U_k^2 [I^-1]_kk on the block (beta, gamma_k); the global test uses all gamma at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from gastrorad.errors import StatisticsWarning
from gastrorad.stats.survival._checks import check_survival
from gastrorad.stats.survival.kaplan_meier import kaplan_meier


@dataclass
class CoxResult:
    """A fitted Cox model: coefficient table, log-likelihood (at the estimate; ``loglik_null``
    at beta = 0, as ``coxph``'s ``loglik``), the data and the tie method."""

    table: pd.DataFrame  # covariate, coef, hr, se, z, p, hr_lower, hr_upper
    loglik: float
    n: int
    events: int
    fitter: object  # unused (was the lifelines fitter); kept for callers that pass it positionally
    data: pd.DataFrame
    time_col: str
    event_col: str
    covariates: list[str]
    ties: str = "efron"
    loglik_null: float = float("nan")
    converged: bool = True

    @property
    def aic(self) -> float:
        """-2 loglik + 2 p, as ``AIC(coxph)``."""
        return -2 * self.loglik + 2 * len(self.covariates)

    @property
    def coef(self) -> np.ndarray:
        return self.table["coef"].to_numpy()

    def linear_predictor(self, df: pd.DataFrame) -> np.ndarray:
        """x' beta (uncentred, as ``predict(coxph, type = "lp", reference = "zero")``). Summed
        column by column, so that patients with the same covariates get bit-identical values
        (a matrix product may round rows differently, which splits ties in concordance)."""
        x = df[self.covariates].to_numpy(float)
        lp = np.zeros(len(x))
        for j, b in enumerate(self.coef):
            lp = lp + x[:, j] * b
        return lp

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


def cox_loglik_score_information(time, event, x, beta, ties: str = "efron"):
    """Log partial likelihood, score and information of a Cox model at ``beta`` (Efron or
    Breslow ties, as survival's ``coxfit6``). At a death time with d deaths the k-th
    (k = 0..d-1) denominator is the risk-set total less k/d of the deaths' total (Efron) or
    the whole risk-set total (Breslow)."""
    n, p = x.shape
    eta = x @ beta
    w = np.exp(eta - eta.max())  # the partial likelihood is invariant to a shift of eta
    ut, inv = np.unique(time, return_inverse=True)
    m = len(ut)
    tot0 = np.bincount(inv, weights=w, minlength=m)
    tot1 = np.zeros((m, p))
    np.add.at(tot1, inv, w[:, None] * x)
    tot2 = np.zeros((m, p, p))
    np.add.at(tot2, inv, w[:, None, None] * x[:, :, None] * x[:, None, :])
    r0, r1, r2 = (np.cumsum(a[::-1], axis=0)[::-1] for a in (tot0, tot1, tot2))  # risk sets: time >= t
    dead = event == 1
    di = inv[dead]
    d = np.bincount(di, minlength=m)
    d0 = np.bincount(di, weights=w[dead], minlength=m)
    d1 = np.zeros((m, p))
    np.add.at(d1, di, w[dead][:, None] * x[dead])
    d2 = np.zeros((m, p, p))
    np.add.at(d2, di, w[dead][:, None, None] * x[dead][:, :, None] * x[dead][:, None, :])
    # one denominator per death: group j, fraction k / d_j of the deaths' totals removed
    g = np.repeat(np.flatnonzero(d > 0), d[d > 0])
    k = np.concatenate([np.arange(c) for c in d[d > 0]]) if len(g) else np.zeros(0)
    f = k / d[g] if ties == "efron" else np.zeros(len(g))
    a0 = r0[g] - f * d0[g]
    a1 = r1[g] - f[:, None] * d1[g]
    a2 = r2[g] - f[:, None, None] * d2[g]
    mean = a1 / a0[:, None]
    loglik = float(np.sum(eta[dead] - eta.max()) - np.sum(np.log(a0)))
    score = x[dead].sum(axis=0) - mean.sum(axis=0)
    info = (a2 / a0[:, None, None]).sum(axis=0) - np.einsum("ei,ej->ij", mean, mean)
    return loglik, score, info


def _cox_newton(time, event, x, ties: str, eps: float = 1e-9, iter_max: int = 20):
    """Newton-Raphson with step halving from beta = 0, stopping when the log-likelihood changes
    by a relative 1e-9, at most 20 iterations: the iterations of ``survival::coxph``
    (``coxfit6``, ``coxph.control()`` defaults), so a fit that stops short of the optimum (a
    flat likelihood, e.g. one event) stops where R stops. Returns (beta, loglik at 0, loglik,
    score, information at beta, converged)."""
    p = x.shape[1]
    beta = np.zeros(p)
    ll0, u, info = cox_loglik_score_information(time, event, x, beta, ties)
    best = ll0
    newbeta = beta + _solve_information(info, u)
    halving = 0
    for _ in range(iter_max):
        newlk, u, info = cox_loglik_score_information(time, event, x, newbeta, ties)
        finite = np.isfinite(newlk) and np.isfinite(u).all() and np.isfinite(info).all()
        if finite and abs(1 - best / newlk) <= eps:
            return newbeta, ll0, newlk, u, info, True
        if not finite or newlk < best:
            halving += 1
            newbeta = (newbeta + halving * beta) / (halving + 1.0)
        else:
            halving = 0
            best = newlk
            step = _solve_information(info, u)
            beta, newbeta = newbeta, newbeta + step
    best, u, info = cox_loglik_score_information(time, event, x, beta, ties)
    return beta, ll0, best, u, info, False


def _solve_information(info: np.ndarray, u: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(info, u)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(info, u, rcond=None)[0]


def fit_cox(df: pd.DataFrame, time_col: str, event_col: str, covariates: list[str], *, level: float = 0.95,
            ties: str = "efron") -> CoxResult:
    """Fit a Cox model, mirroring ``survival::coxph(Surv(time, event) ~ ..., ties = ties)``
    (Efron by default, ``ties="breslow"`` on request): R's Newton-Raphson iterations and
    stopping rule (``coxph.control()`` defaults), Wald SEs from the inverse information at
    the estimate, Wald CIs and P values.

    Rows with a missing value in any used column are dropped (as R's ``na.omit``). As R
    warns, a fit that did not converge, or whose log-likelihood converged while a
    coefficient still moves (``Loglik converged before variable ...; coefficient may be
    infinite``: monotone likelihood, e.g. complete separation), raises a StatisticsWarning
    naming the covariates. Collinear covariates (singular information) are an error.
    """
    if ties not in ("efron", "breslow"):
        raise ValueError("ties must be 'efron' or 'breslow'")
    data = df[[time_col, event_col, *covariates]].dropna().reset_index(drop=True)
    time, event, _ = check_survival(data[time_col], data[event_col])
    if not covariates:
        raise ValueError("fit_cox needs at least one covariate")
    if event.sum() == 0:
        raise ValueError("no events: a Cox model cannot be fitted")
    x = data[covariates].to_numpy(float)
    # centre non-{-1, 0, 1} columns as coxph does (nocenter = c(-1, 0, 1)); the fit is invariant
    centre = np.where(np.isin(x, (-1.0, 0.0, 1.0)).all(axis=0), 0.0, x.mean(axis=0))
    xc = x - centre
    _, _, info0 = cox_loglik_score_information(time, event, xc, np.zeros(len(covariates)), ties)
    if np.linalg.matrix_rank(info0, tol=np.finfo(float).eps ** 0.75 * max(np.abs(np.diag(info0)).max(), 1.0)) \
            < len(covariates):
        raise ValueError(f"the covariates {covariates} are collinear (or one is constant among the patients at "
                         "risk): the Cox information matrix is singular")
    beta, ll0, ll, u, info, converged = _cox_newton(time, event, xc, ties)
    var = np.linalg.inv(info)
    se = np.sqrt(np.diag(var))
    _warn_infinite(covariates, beta, u, var, converged)
    z = stats.norm.ppf(1 - (1 - level) / 2)
    with np.errstate(over="ignore"):  # a diverging fit (warned above) has HR limits 0 and inf, as R prints
        table = pd.DataFrame({"covariate": covariates, "coef": beta, "hr": np.exp(beta), "se": se, "z": beta / se,
                              "p": 2 * stats.norm.sf(np.abs(beta / se)), "hr_lower": np.exp(beta - z * se),
                              "hr_upper": np.exp(beta + z * se)})
    return CoxResult(table, float(ll), len(data), int(event.sum()), None, data, time_col, event_col,
                     list(covariates), ties, float(ll0), converged)


def _warn_infinite(covariates, beta, u, var, converged, eps: float = 1e-9) -> None:
    """R's checks after a Cox fit (``coxph.fit``): no convergence in 20 iterations, or a
    log-likelihood that converged while |score x variance| still exceeds eps and
    sqrt(eps) |beta| (the coefficient may be infinite)."""
    import warnings
    if not converged:
        warnings.warn(f"Cox model ({', '.join(covariates)}): ran out of iterations and did not converge (as coxph "
                      "warns); a coefficient may be infinite (monotone likelihood, e.g. complete separation: no "
                      "events in one group); the hazard ratios and CIs are not meaningful", StatisticsWarning,
                      stacklevel=3)
        return
    infs = np.abs(u @ var)
    bad = ~np.isfinite(u) | ((infs > eps) & (infs > np.sqrt(eps) * np.abs(beta)))
    if bad.any():
        names = ", ".join(c for c, b in zip(covariates, bad) if b)
        warnings.warn(f"Cox model: log-likelihood converged before coefficient(s) {names}; coefficient may be "
                      "infinite (monotone likelihood, e.g. complete separation: as coxph warns). Hazard ratios "
                      "and CIs for them are not meaningful", StatisticsWarning, stacklevel=3)


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


def efron_score_information(time, event, x, beta, g=None, ties: str = "efron"):
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
            f = l / d if ties == "efron" else 0.0
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


def _zph_solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        raise ValueError("cox.zph cannot be computed: its information matrix is singular (R fails the same way, "
                         "'system is exactly singular'); a fit with a single event has no time variation to test"
                         ) from None


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
    if result.events < 2:
        raise ValueError(f"cox.zph needs at least two events; this fit has {result.events} (R fails with "
                         "'system is exactly singular')")
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
    U, I = efron_score_information(time, event, x, result.coef, g, ties=result.ties)
    p = x.shape[1]
    rows = []
    for k in range(p):
        idx = list(range(p)) + [p + k]
        sub = I[np.ix_(idx, idx)]
        u = np.zeros(p + 1)
        u[-1] = U[p + k]
        u[:p] = U[:p]
        chi = float(u @ _zph_solve(sub, u))
        rows.append({"covariate": result.covariates[k], "chisq": chi, "df": 1, "p": float(stats.chi2.sf(chi, 1))})
    chi = float(U @ _zph_solve(I, U))
    rows.append({"covariate": "GLOBAL", "chisq": chi, "df": p, "p": float(stats.chi2.sf(chi, p))})
    return ZphResult(pd.DataFrame(rows))
