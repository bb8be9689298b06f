"""Pathwise coordinate descent for the LASSO logistic model, the algorithm of glmnet's
``lognet`` (Friedman, Hastie and Tibshirani, J Stat Softw 2010), compiled with numba.

Written from the published algorithm (no glmnet code is copied): for each lambda of a
decreasing sequence, warm-started from the previous solution,

- the *sequential strong rule* (Tibshirani et al., JRSS-B 2012) keeps the columns whose
  gradient at the previous solution exceeds 2 lambda - lambda_previous; only those are
  cycled, and the optimality (KKT) conditions of every other column are checked once the
  fit converged, adding violators and refitting;
- an outer IRLS step takes the quadratic approximation of the binomial log-likelihood at
  the current linear predictor (weights p (1 - p), probabilities outside [1e-9, 1 - 1e-9]
  set to 0 or 1 as glmnet's ``pmin`` does);
- the penalised weighted least-squares problem is solved by cyclic coordinate descent with
  soft-thresholding, a full sweep over the strong set followed by sweeps over the active
  set only until they converge, then a full sweep again (glmnet's active-set cycling),
  with the unpenalised intercept updated after every sweep.

Convergence is glmnet's: a sweep has converged when the largest weighted squared change
of a coefficient, ``max_j xv_j d_j^2`` (``xv_j`` the column's weighted sum of squares,
the intercept with the total weight), is below ``thresh`` times the null deviance (per
observation); the IRLS loop when the same measure between two IRLS steps is below it and
no column outside the strong set violates the KKT conditions. The path stops early (the
default lambda sequence only) as glmnet's does: after at least 5 lambdas, once the
deviance ratio exceeds 0.999 or grew by less than 1e-5; and on any sequence once the
fitted probabilities are all 0 or 1 (the total IRLS weight below glmnet's ``vmin``).

The design must be standardised (centred; glmnet's 1/n standard deviation) and
Fortran-ordered, so that a column is contiguous; coefficients are on that scale.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Floating-point reassociation lets the compiler vectorise the dot products (2x faster); the
# results stay deterministic (one compiled code for every process) and match glmnet to ~1e-13
_FAST = {"reassoc", "contract", "nsz", "arcp"}

PMIN = 1e-9  # glmnet.control()$pmin
FDEV = 1e-5  # glmnet.control()$fdev: least deviance-ratio gain before the path stops
DEVMAX = 0.999  # glmnet.control()$devmax
MNLAM = 5  # glmnet.control()$mnlam: least number of lambdas before a stop
# A column enters when its gradient exceeds lambda by more than rounding: at lambda.max (the
# largest gradient itself) the null model is the solution, with exact zeros as glmnet reports
KKT_MARGIN = 1.0 + 1e-10


@njit(cache=True, fastmath=_FAST)
def _col_dot(X, j, r):
    n = X.shape[0]
    s = 0.0
    for i in range(n):
        s += X[i, j] * r[i]
    return s


@njit(cache=True)
def _workspace(beta):
    """Active list, its membership, the strong set, their count (the columns with a non-zero
    starting coefficient are active and strong), curvatures and saved coefficients."""
    p = beta.shape[0]
    act = np.empty(p, np.int64)
    in_act = np.zeros(p, np.bool_)
    strong = np.zeros(p, np.bool_)
    nin = 0
    for j in range(p):
        if beta[j] != 0.0:
            act[nin] = j
            nin += 1
            in_act[j] = True
            strong[j] = True
    return act, in_act, strong, nin, np.zeros(p), np.zeros(p)


@njit(cache=True, fastmath=_FAST)
def _abs_scores(X, r):
    ga = np.empty(X.shape[1])
    for j in range(X.shape[1]):
        ga[j] = abs(_col_dot(X, j, r))
    return ga


@njit(cache=True)
def _strong_rule(ga, strong, tlam):
    for j in range(ga.shape[0]):
        if not strong[j] and ga[j] > tlam:
            strong[j] = True


@njit(cache=True, fastmath=_FAST)
def _weighted_squares(X, w, strong, xv):
    """xv_j = sum_i w_i x_ij^2 for the strong columns (the curvature of coordinate j)."""
    n = X.shape[0]
    for j in range(X.shape[1]):
        if strong[j]:
            s = 0.0
            for i in range(n):
                s += w[i] * X[i, j] * X[i, j]
            xv[j] = s


@njit(cache=True, fastmath=_FAST)
def _kkt_passes(X, r, strong, ga, al):
    """Checks the optimality of every column outside the strong set; violators join it."""
    ok = True
    for k in range(X.shape[1]):
        if not strong[k]:
            ga[k] = abs(_col_dot(X, k, r))
            if ga[k] > al * KKT_MARGIN:
                strong[k] = True
                ok = False
    return ok


@njit(cache=True, fastmath=_FAST)
def _max_violation(X, r, beta, lam, worst):
    """max(worst, largest violation of the LASSO optimality conditions given the scores X'r)."""
    for j in range(X.shape[1]):
        g = _col_dot(X, j, r)
        if beta[j] != 0.0:
            viol = abs(g - (lam if beta[j] > 0 else -lam))
        else:
            viol = abs(g) - lam
        if viol > worst:
            worst = viol
    return worst


@njit(cache=True, fastmath=_FAST)
def _intercept_update(r, v, xmz, dlx):
    """The unpenalised intercept's step, sum(r) / sum(v), applied to the working residual;
    returns (step, dlx)."""
    if xmz <= 0.0:
        return 0.0, dlx
    s = 0.0
    for i in range(r.shape[0]):
        s += r[i]
    d = s / xmz
    if d != 0.0:
        for i in range(r.shape[0]):
            r[i] -= d * v[i]
        dlx = max(dlx, xmz * d * d)
    return d, dlx


@njit(cache=True, fastmath=_FAST)
def _probabilities(X, y, beta, b0, act, nin, fmax, q, v, r):
    """From the linear predictor of the active columns: q = fitted probabilities (0 or 1
    beyond |eta| > fmax), v = IRLS weights / n, r = (y - q) / n; returns sum(v)."""
    n = X.shape[0]
    w = 1.0 / n
    for i in range(n):
        q[i] = b0
    for a in range(nin):
        k = act[a]
        bk = beta[k]
        if bk != 0.0:
            for i in range(n):
                q[i] += bk * X[i, k]
    xmz = 0.0
    for i in range(n):
        f = q[i]
        if f < -fmax:
            qi = 0.0
        elif f > fmax:
            qi = 1.0
        else:
            qi = 1.0 / (1.0 + np.exp(-f))
        q[i] = qi
        v[i] = w * qi * (1.0 - qi)
        r[i] = w * (y[i] - qi)
        xmz += v[i]
    return xmz


@njit(cache=True, fastmath=_FAST)
def _half_deviance(y, q, pmin):
    """-mean(y log q + (1 - y) log(1 - q)), probabilities clamped to [pmin, 1 - pmin]."""
    n = y.shape[0]
    s = 0.0
    for i in range(n):
        qi = min(max(q[i], pmin), 1.0 - pmin)
        s -= y[i] * np.log(qi) + (1.0 - y[i]) * np.log(1.0 - qi)
    return s / n


@njit(cache=True, fastmath=_FAST)
def _soft_step(X, j, lam, beta, xv, r):
    """Coordinate j's soft-thresholded minimiser given the working residual r: sets beta[j],
    returns its change (0 for a column without curvature)."""
    if xv[j] <= 0.0:
        return 0.0
    u = _col_dot(X, j, r) + beta[j] * xv[j]
    au = abs(u) - lam
    new = 0.0
    if au > 0.0:
        new = (au if u > 0 else -au) / xv[j]
    d = new - beta[j]
    beta[j] = new
    return d


@njit(cache=True, fastmath=_FAST)
def _cd_update(X, j, lam, beta, xv, r, v, dlx):
    """One coordinate-descent update of column j (soft-thresholding); returns (change, dlx)."""
    d = _soft_step(X, j, lam, beta, xv, r)
    if d == 0.0:
        return 0.0, dlx
    for i in range(X.shape[0]):
        r[i] -= d * v[i] * X[i, j]
    dd = xv[j] * d * d
    return d, (dd if dd > dlx else dlx)


@njit(cache=True, fastmath=_FAST)
def logistic_path_cd(X, y, lambdas, beta_init, b0_init, thresh, maxit, stop, prev_lambda):
    """LASSO logistic along decreasing ``lambdas`` on a standardised, Fortran-ordered X and
    0/1 ``y``, started from (``beta_init``, ``b0_init``) at ``prev_lambda`` (0 for a fresh
    start). Returns (coefficients (L, p), intercepts (L,), deviance ratios (L,), number of
    lambdas fitted, status: 0 converged, 1 the pass budget ``maxit`` ran out, 2 saturated,
    coordinate passes used). Lambdas after the last fitted one are left at zero."""
    n, p = X.shape
    L = lambdas.shape[0]
    coefs = np.zeros((L, p))
    b0s = np.zeros(L)
    devr = np.zeros(L)
    pmin = PMIN
    fmax = np.log(1.0 / pmin - 1.0)
    vmin = (1.0 + pmin) * pmin * (1.0 - pmin)
    q0 = 0.0
    for i in range(n):
        q0 += y[i]
    q0 /= n
    dev0 = -(q0 * np.log(q0) + (1.0 - q0) * np.log(1.0 - q0))  # null deviance / 2n
    thr = thresh * dev0
    beta = beta_init.copy()
    b0 = b0_init
    q = np.empty(n)
    v = np.empty(n)
    r = np.empty(n)
    act, in_act, strong, nin, xv, bs = _workspace(beta)
    xmz = _probabilities(X, y, beta, b0, act, nin, fmax, q, v, r)
    ga = _abs_scores(X, r)
    nlp, status, lmu, al0 = 0, 0, 0, prev_lambda
    for m in range(L):
        al = lambdas[m]
        _strong_rule(ga, strong, 2.0 * al - al0)
        al0 = al
        saturated = False
        while True:  # IRLS
            if nlp > maxit:
                status = 1
                break
            bs0 = b0
            for a in range(nin):
                bs[act[a]] = beta[act[a]]
            _weighted_squares(X, v, strong, xv)
            while True:  # weighted least squares: full sweep, then active-set sweeps
                nlp += 1
                dlx = 0.0
                for j in range(p):
                    if strong[j]:
                        d, dlx = _cd_update(X, j, al, beta, xv, r, v, dlx)
                        if d != 0.0 and not in_act[j]:
                            in_act[j] = True
                            act[nin] = j
                            nin += 1
                d, dlx = _intercept_update(r, v, xmz, dlx)
                b0 += d
                if dlx < thr or nlp > maxit:
                    break
                while True:
                    nlp += 1
                    dlx = 0.0
                    for a in range(nin):
                        d, dlx = _cd_update(X, act[a], al, beta, xv, r, v, dlx)
                    d, dlx = _intercept_update(r, v, xmz, dlx)
                    b0 += d
                    if dlx < thr or nlp > maxit:
                        break
            xmz = _probabilities(X, y, beta, b0, act, nin, fmax, q, v, r)
            if xmz <= vmin:
                saturated = True
                break
            converged = xmz * (b0 - bs0) ** 2 <= thr
            if converged:
                for a in range(nin):
                    k = act[a]
                    if xv[k] * (beta[k] - bs[k]) ** 2 > thr:
                        converged = False
                        break
            if converged and _kkt_passes(X, r, strong, ga, al):
                break
        coefs[m] = beta
        b0s[m] = b0
        devr[m] = 1.0 - _half_deviance(y, q, pmin) / dev0
        lmu = m + 1
        if status == 1:
            break
        if saturated:
            status = 2
            break
        if stop and lmu >= MNLAM:
            if devr[m] - devr[m - 1] < FDEV or devr[m] > DEVMAX:
                break
    return coefs, b0s, devr, lmu, status, nlp


@njit(cache=True, fastmath=_FAST)
def logistic_kkt(X, y, beta, b0, lam):
    """Largest violation of the LASSO logistic optimality conditions (on the mean
    log-likelihood scale): |score_0| for the intercept, |score_j - lam sign(b_j)| for the
    non-zero coefficients, (|score_j| - lam)+ for the zeros."""
    n, p = X.shape
    r = np.empty(n)
    s0 = 0.0
    for i in range(n):
        f = b0
        for j in range(p):
            if beta[j] != 0.0:
                f += beta[j] * X[i, j]
        r[i] = (y[i] - 1.0 / (1.0 + np.exp(-f))) / n
        s0 += r[i]
    return _max_violation(X, r, beta, lam, abs(s0))


@njit(cache=True)
def linear_predictors(X, B, b0):
    """b0[l] + X @ B[l] for every row of the coefficient matrix B (L, p), as an (L, n) array,
    by plain loops: the same sums in every process (a BLAS product may split them by its
    thread count, which made n_jobs=1 and n_jobs=2 differ in the last digit)."""
    n, p = X.shape
    L = B.shape[0]
    out = np.empty((L, n))
    for m in range(L):
        for i in range(n):
            s = b0[m]
            for j in range(p):
                if B[m, j] != 0.0:
                    s += X[i, j] * B[m, j]
            out[m, i] = s
    return out


# --- LASSO-Cox (glmnet's coxnet: Simon, Friedman, Hastie and Tibshirani, J Stat Softw 2011) ---
COX_FDEV = 1e-3  # coxnet's fdev (glmnet.control()$fdev x 100): least relative gain over 4 lambdas
COX_DEVMAX = 0.99  # coxnet's devmax (0.999 x 0.99 / 0.999)


@njit(cache=True, fastmath=_FAST)
def risk_sums(eta):
    """Suffix sums of exp(eta - max eta) over time-sorted rows (rc[i]: the sum over rows i..n-1,
    a risk set's total) and that maximum (the shift)."""
    n = eta.shape[0]
    m = eta.max()
    rc = np.empty(n + 1)
    rc[n] = 0.0
    for i in range(n - 1, -1, -1):
        rc[i] = rc[i + 1] + np.exp(eta[i] - m)
    return rc, m


@njit(cache=True, fastmath=_FAST)
def cox_loglik(eta, event, start, dcount):
    """Breslow log partial likelihood of linear predictors ``eta`` on time-sorted rows: the
    sum of eta over deaths minus, per death time, d_k log(sum of exp(eta) over its risk
    set, the rows from ``start[k]`` on)."""
    rc, m = risk_sums(eta)
    ll = 0.0
    for i in range(eta.shape[0]):
        if event[i] != 0.0:
            ll += eta[i]
    for k in range(start.shape[0]):
        ll -= dcount[k] * (np.log(rc[start[k]]) + m)
    return ll


@njit(cache=True, fastmath=_FAST)
def _cox_irls(f, event, start, dcount, ngroup, r, w):
    """The quadratic approximation of the partial likelihood at ``f`` with glmnet's diagonal
    weights: r = score in eta / n, w = diagonal of the information / n (rows before the first
    death, in no risk set, get 0). Returns the log partial likelihood."""
    n = f.shape[0]
    K = start.shape[0]
    m = f.max()
    e = np.empty(n)
    rc = np.empty(n + 1)
    rc[n] = 0.0
    for i in range(n - 1, -1, -1):
        e[i] = np.exp(f[i] - m)
        rc[i] = rc[i + 1] + e[i]
    A = np.empty(K)
    B = np.empty(K)
    a = 0.0
    b = 0.0
    ll = 0.0
    for k in range(K):
        s0 = rc[start[k]]
        a += dcount[k] / s0
        b += dcount[k] / (s0 * s0)
        A[k] = a
        B[k] = b
        ll -= dcount[k] * (np.log(s0) + m)
    inv = 1.0 / n
    for i in range(n):
        g = ngroup[i]
        if event[i] != 0.0:
            ll += f[i]
        if g > 0:
            ai = e[i] * A[g - 1]
            r[i] = (event[i] - ai) * inv
            w[i] = (ai - e[i] * e[i] * B[g - 1]) * inv
        else:
            r[i] = event[i] * inv
            w[i] = 0.0
    return ll


@njit(cache=True, fastmath=_FAST)
def _cox_cd_update(X, j, lam, beta, xv, r, w, f, dlx):
    """Coordinate j's soft-thresholded update of the weighted least-squares problem; keeps
    the working residual r and the linear predictor f. Returns (change, dlx)."""
    d = _soft_step(X, j, lam, beta, xv, r)
    if d == 0.0:
        return 0.0, dlx
    for i in range(X.shape[0]):
        xij = X[i, j]
        r[i] -= d * w[i] * xij
        f[i] += d * xij
    dd = xv[j] * d * d
    return d, (dd if dd > dlx else dlx)


@njit(cache=True, fastmath=_FAST)
def cox_path_cd(X, event, start, dcount, ngroup, lambdas, beta_init, thresh, maxit, stop, prev_lambda,
                saturated):
    """LASSO-Cox (Breslow) along decreasing ``lambdas`` on a standardised, Fortran-ordered X
    whose rows are sorted by time (``start``: first row of each death time's risk set,
    ``dcount``: deaths at it, ``ngroup``: how many death times each row is at risk for),
    warm-started from ``beta_init`` at ``prev_lambda``: strong rules, IRLS with glmnet's
    diagonal weights, active-set coordinate descent, convergence at ``thresh`` times the null
    deviance / 2n, as glmnet's coxnet. With ``stop`` the path stops as coxnet's default path
    does; past a deviance ratio of ``saturated`` (no finite optimum near: the coefficients
    run off) the remaining lambdas are not fitted. Returns (coefficients (L, p), deviance
    ratios, lambdas fitted, per-lambda convergence (1 converged, 0 the pass budget ran out),
    coordinate passes)."""
    n, p = X.shape
    L = lambdas.shape[0]
    coefs = np.zeros((L, p))
    devr = np.zeros(L)
    conv = np.ones(L, np.int64)
    beta = beta_init.copy()
    f = np.zeros(n)
    act, in_act, strong, nin, xv, bs = _workspace(beta)
    for a in range(nin):
        for i in range(n):
            f[i] += beta[act[a]] * X[i, act[a]]
    r = np.empty(n)
    w = np.empty(n)
    f0 = np.zeros(n)
    ll_null = cox_loglik(f0, event, start, dcount)
    ll_sat = 0.0
    for k in range(start.shape[0]):
        ll_sat -= dcount[k] * np.log(dcount[k])
    dev0 = (ll_sat - ll_null) / n
    thr = thresh * dev0
    ll = _cox_irls(f, event, start, dcount, ngroup, r, w)
    ga = _abs_scores(X, r)
    nlp, lmu, al0 = 0, 0, prev_lambda
    for m in range(L):
        al = lambdas[m]
        _strong_rule(ga, strong, 2.0 * al - al0)
        al0 = al
        while True:  # IRLS
            if nlp > maxit:
                conv[m] = 0
                break
            for a in range(nin):
                bs[act[a]] = beta[act[a]]
            _weighted_squares(X, w, strong, xv)
            while True:
                nlp += 1
                dlx = 0.0
                for j in range(p):
                    if strong[j]:
                        d, dlx = _cox_cd_update(X, j, al, beta, xv, r, w, f, dlx)
                        if d != 0.0 and not in_act[j]:
                            in_act[j] = True
                            act[nin] = j
                            nin += 1
                if dlx < thr or nlp > maxit:
                    break
                while True:
                    nlp += 1
                    dlx = 0.0
                    for a in range(nin):
                        d, dlx = _cox_cd_update(X, act[a], al, beta, xv, r, w, f, dlx)
                    if dlx < thr or nlp > maxit:
                        break
            ll = _cox_irls(f, event, start, dcount, ngroup, r, w)
            converged = True
            for a in range(nin):
                k = act[a]
                if xv[k] * (beta[k] - bs[k]) ** 2 >= thr:
                    converged = False
                    break
            if converged and _kkt_passes(X, r, strong, ga, al):
                break
        coefs[m] = beta
        devr[m] = (ll - ll_null) / (ll_sat - ll_null) if ll_sat > ll_null else 0.0
        lmu = m + 1
        if conv[m] == 0:
            break
        if devr[m] > saturated:
            break
        if stop and lmu >= MNLAM:
            if devr[m] > COX_DEVMAX or (devr[m] > 0.0 and (devr[m] - devr[m - MNLAM + 1]) / devr[m] < COX_FDEV):
                break
    return coefs, devr, lmu, conv, nlp


@njit(cache=True, fastmath=_FAST)
def cox_kkt(X, event, start, dcount, ngroup, beta, lam):
    """Largest violation of the LASSO-Cox optimality conditions (score / n against lambda)
    at ``beta``, and the log partial likelihood there."""
    n, p = X.shape
    f = np.zeros(n)
    for j in range(p):
        if beta[j] != 0.0:
            for i in range(n):
                f[i] += beta[j] * X[i, j]
    r = np.empty(n)
    w = np.empty(n)
    ll = _cox_irls(f, event, start, dcount, ngroup, r, w)
    return _max_violation(X, r, beta, lam, 0.0), ll
