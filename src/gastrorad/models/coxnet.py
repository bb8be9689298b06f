"""Exact LASSO-Cox fits by proximal Newton steps, compiled with numba: the tight single-lambda
fits of :func:`gastrorad.models.lasso.lasso_fit` and the finishing steps of
:func:`gastrorad.models.lasso.cox_path`, where glmnet's coordinate descent
(:mod:`gastrorad.models.glmnet_cd`) crawls.

Minimises -loglik(beta) / n + lambda * sum |beta_j| for the Breslow partial likelihood on
standardised columns. Each outer step takes the second-order expansion of the partial
likelihood with the exact Hessian on a working set (the non-zero coefficients and the columns
violating the optimality conditions), solves that quadratic LASSO model by coordinate descent
and one linear solve on its support, and is damped (halved) when it would not lower the
penalised objective, so it also converges where the likelihood flattens (wide, collinear
radiomics or deep-feature tables), where coordinate descent on glmnet's diagonal weights
needs thousands of passes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from gastrorad.errors import StatisticsWarning
from gastrorad.models.glmnet_cd import _cox_irls, risk_sums


@njit(cache=True)
def _loglik(eta, start, dcount, dsum):
    """Breslow log partial likelihood / 1 (data sorted by time): sum over death groups of
    (sum of eta over the group's deaths) - d_k log(sum over the risk set of exp(eta))."""
    rc, m = risk_sums(eta)
    ll = 0.0
    for k in range(start.shape[0]):
        ll += dsum[k] - dcount[k] * (np.log(rc[start[k]]) + m)
    return ll


def _grad_weights(eta, event, start, dcount, ngroup, n):
    """Per-row score r_i = d loglik / d eta_i and glmnet's diagonal weights w_i, both / n."""
    r, w = np.empty(n), np.empty(n)
    _cox_irls(np.asarray(eta, float), np.asarray(event, float), start, dcount, ngroup, r, w)
    return r, w


class CoxData:
    """Standardised-design Cox data sorted by time, with Breslow death groups precomputed."""

    def __init__(self, Xs: np.ndarray, time, event):
        time = np.asarray(time, float)
        event = np.asarray(event, float)
        order = np.lexsort((1 - event, time))  # ascending time, deaths first within a tie
        self.order = order
        self.X = np.ascontiguousarray(Xs[order])
        self.time, self.event = time[order], event[order]
        death_times = np.unique(self.time[self.event == 1])
        self.start = np.searchsorted(self.time, death_times, side="left").astype(np.int64)
        self.dcount = np.array([((self.time == t) & (self.event == 1)).sum() for t in death_times], float)
        self.n = len(time)
        # number of death groups at or before each row's time (its risk-set memberships)
        self.ngroup = np.searchsorted(death_times, self.time, side="right").astype(np.int64)
        self.death_rows = self.event == 1
        self._gid = np.searchsorted(death_times, self.time[self.death_rows])
        # the sum of eta over each death group is linear in beta: its design rows
        self.group_design = np.zeros((len(self.start), Xs.shape[1]))
        np.add.at(self.group_design, self._gid, self.X[self.death_rows])

    def loglik(self, beta: np.ndarray) -> float:
        return float(_loglik(self.X @ beta, self.start, self.dcount, self.group_design @ beta))

    def deviance(self, beta: np.ndarray) -> float:
        """glmnet's ``coxnet.deviance``: 2 (loglik_saturated - loglik), saturated = -sum d log d."""
        return float(2 * (-(self.dcount * np.log(self.dcount)).sum() - self.loglik(beta)))

    def fit(self, lam: float, beta0: np.ndarray | None = None, *, tol: float = 1e-10,
            max_outer: int = 100, max_pass: int = 200, warn: bool = True) -> np.ndarray:
        """Coefficients (standardised scale) minimising -loglik/n + lam * |beta|_1, started
        from ``beta0``, to a largest optimality violation of ``tol``. Tighter than glmnet's own
        default (``thresh = 1e-7`` on its coefficient-change measure), whose fits drift where
        the likelihood is flat: R's curves are matched with ``thresh = 1e-14``.

        Where no finite optimum is near (tiny lambdas on wide tables, where the partial
        likelihood keeps rising along some direction) the fit stops after ``max_outer`` steps,
        as glmnet stops at ``maxit``; ``self.converged`` says whether it converged."""
        beta = np.zeros(self.X.shape[1]) if beta0 is None else np.asarray(beta0, float).copy()
        b, it = _solve(self.X, self.event, self.start, self.dcount, self.group_design, self.ngroup,
                       float(lam), beta, float(tol), int(max_outer), int(max_pass))
        self.converged = it >= 0
        if it < 0 and warn:
            import warnings
            warnings.warn(f"LASSO-Cox did not converge at lambda={lam:.4g} in {max_outer} steps", StatisticsWarning,
                          stacklevel=2)
        return b


@njit(cache=True)
def _obj(X, beta, start, dcount, dsum_design, lam, n):
    eta = X @ beta
    return -_loglik(eta, start, dcount, dsum_design @ beta) / n + lam * np.abs(beta).sum()


@njit(cache=True)
def _hessian(X, eta, start, dcount, cols):
    """Hessian of -loglik (Breslow) in the coefficients of ``cols``: over death groups,
    d_k (sum_{R_k} e_i x_i x_i' / S0_k - mu_k mu_k'), written as X' diag(e_i c_i) X minus
    sum_k d_k mu_k mu_k' (c_i = sum over the risk sets holding row i of d_k / S0_k) so that
    both terms are matrix products (BLAS)."""
    n = X.shape[0]
    q = cols.shape[0]
    K = start.shape[0]
    m = eta.max()
    e = np.exp(eta - m)
    Xq = np.empty((n, q))
    for i in range(n):
        for a in range(q):
            Xq[i, a] = X[i, cols[a]]
    S0 = np.empty(n + 1)
    S0[n] = 0.0
    S1 = np.zeros((n + 1, q))
    for i in range(n - 1, -1, -1):
        S0[i] = S0[i + 1] + e[i]
        for a in range(q):
            S1[i, a] = S1[i + 1, a] + e[i] * Xq[i, a]
    wrow = np.zeros(n)
    M = np.empty((K, q))
    Md = np.empty((K, q))
    c = 0.0
    k = 0
    for i in range(n):
        while k < K and start[k] <= i:
            s0 = S0[start[k]]
            c += dcount[k] / s0
            for a in range(q):
                M[k, a] = S1[start[k], a] / s0
                Md[k, a] = M[k, a] * dcount[k]
            k += 1
        wrow[i] = e[i] * c
    WX = np.empty((n, q))
    for i in range(n):
        for a in range(q):
            WX[i, a] = wrow[i] * Xq[i, a]
    H = Xq.T.copy() @ WX - Md.T.copy() @ M
    for a in range(q):
        for b in range(a):
            H[a, b] = H[b, a] = 0.5 * (H[a, b] + H[b, a])
    return H


@njit(cache=True)
def _polish(H, g, b0, b, lam):
    """Exact minimiser of the quadratic model -g'(x - b0) + (x - b0)'H(x - b0)/2 + lam |x|_1
    on the support and signs coordinate descent found: one linear solve, accepted only if it
    keeps those signs and the zeros stay optimal. Coordinate descent crawls on collinear
    columns; this finishes its job in one step."""
    act = np.flatnonzero(b != 0.0)
    if act.shape[0] == 0:
        return b
    q = b.shape[0]
    s = np.sign(b[act])
    # gradient of the model at x = 0 on the inactive coordinates shifts the right-hand side
    rhs = g[act] - lam * s + H[act][:, act] @ b0[act]
    for a in range(q):
        if b[a] == 0.0 and b0[a] != 0.0:
            rhs -= H[act, a] * (0.0 - b0[a])
    Haa = H[act][:, act].copy()
    ridge = 1e-12 * (np.trace(Haa) / act.shape[0] + 1e-300)
    for a in range(act.shape[0]):
        Haa[a, a] += ridge
    x = np.linalg.solve(Haa, rhs)
    if np.any(np.sign(x) != s):
        return b
    out = np.zeros(q)
    out[act] = x
    grad = -g + H @ (out - b0)
    for a in range(q):
        if out[a] == 0.0 and abs(grad[a]) > lam * (1 + 1e-9):
            return b
    return out


@njit(cache=True)
def _solve(X, event, start, dcount, dsum_design, ngroup, lam, beta, tol, max_outer, max_pass):
    """Proximal Newton with the exact Hessian on a working set (the non-zero coefficients plus
    every column violating the optimality condition), coordinate descent on each quadratic
    model, and a halving line search on the penalised objective. Returns (beta, steps taken),
    steps = -1 when ``max_outer`` was reached. Stops once the largest violation of the LASSO
    optimality (subgradient) conditions on the -loglik/n scale is below ``tol``."""
    n, p = X.shape
    obj = _obj(X, beta, start, dcount, dsum_design, lam, n)
    for outer in range(max_outer):
        eta = X @ beta
        r = np.empty(n)
        _cox_irls(eta, event, start, dcount, ngroup, r, np.empty(n))
        g = X.T @ r  # score / n
        ws = []
        kkt = 0.0
        for j in range(p):
            if beta[j] != 0.0:
                ws.append(j)
                kkt = max(kkt, abs(g[j] - lam * np.sign(beta[j])))
            elif abs(g[j]) > lam:
                ws.append(j)
                kkt = max(kkt, abs(g[j]) - lam)
        if len(ws) == 0 or kkt < tol:
            return beta, outer + 1
        cols = np.array(ws)
        q = cols.shape[0]
        H = _hessian(X, eta, start, dcount, cols) / n
        b = beta[cols].copy()
        b0 = b.copy()
        gq = -g[cols].copy()  # gradient of the quadratic model of -loglik/n at b
        for _ in range(max_pass):
            dmax = 0.0
            for a in range(q):
                h = H[a, a]
                if h <= 0.0:
                    continue
                u = h * b[a] - gq[a]
                ba = 0.0 if abs(u) <= lam else (u - lam * np.sign(u)) / h
                d = ba - b[a]
                if d != 0.0:
                    b[a] = ba
                    for c in range(q):
                        gq[c] += H[c, a] * d
                    dmax = max(dmax, h * d * d)
            if dmax < 1e-4 * kkt * kkt:  # inexact Newton: solve the model as far as the fit is off
                break
        b = _polish(H, g[cols], b0, b, lam)
        step = np.zeros(p)
        for a in range(q):
            step[cols[a]] = b[a] - b0[a]
        t = 1.0
        new_obj = obj
        found = False
        for _ in range(40):
            new_obj = _obj(X, beta + t * step, start, dcount, dsum_design, lam, n)
            if new_obj < obj:
                found = True
                break
            t *= 0.5
        if not found:
            return beta, outer + 1  # no descent left along the Newton direction: optimal to rounding
        if t == 1.0:
            for a in range(q):
                beta[cols[a]] = b[a]  # exact zeros stay exact
        else:
            beta = beta + t * step
        obj = new_obj
    return beta, -1
