"""LASSO logistic and LASSO-Cox with cross-validated lambda, as ``glmnet``/``cv.glmnet``.

The problem is glmnet's: minimise -loglik / n + lambda * sum |beta_j| on columns
standardised with their 1/n standard deviation (intercept unpenalised), coefficients
reported on the original scale; solved by glmnet's own algorithm, pathwise coordinate
descent with warm starts, strong rules and active-set cycling inside IRLS
(:mod:`gastrorad.models.glmnet_cd`; for Cox finished by exact Newton steps,
:mod:`gastrorad.models.coxnet`, where coordinate descent crawls). The lambda sequence is
glmnet's (lambda_max = max |X_std' (y - ybar)| / n down to lambda_max x 1e-4, or x 0.01 when
n < p; 100 values) unless one is given. Cross-validation follows ``cv.glmnet``: the binomial
deviance (probabilities clamped to [1e-5, 1 - 1e-5]) is averaged within folds, then over
folds weighted by their size; ``lambda_min`` minimises it and ``lambda_1se`` is the largest
lambda within one SE. LASSO-Cox uses Breslow ties (glmnet's default) and, for
cross-validation, glmnet's grouped partial-likelihood deviance (:func:`cv_lasso_cox`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gastrorad.errors import StatisticsWarning
from gastrorad.stats.resample import map_replicates


def _standardize(X: np.ndarray):
    mean = X.mean(axis=0)
    sd = X.std(axis=0)  # 1/n, as glmnet
    sd = np.where(sd > 0, sd, 1.0)
    return (X - mean) / sd, mean, sd


def lambda_sequence(X, y=None, *, kind: str = "logistic", time=None, event=None, nlambda: int = 100,
                    lambda_min_ratio: float | None = None) -> np.ndarray:
    """glmnet's lambda sequence for a LASSO fit."""
    Xs, _, _ = _standardize(np.asarray(X, float))
    n, p = Xs.shape
    if kind == "logistic":
        y = np.asarray(y, float)
        grad = Xs.T @ (y - y.mean()) / n
    else:
        time, event = np.asarray(time, float), np.asarray(event, float)
        # score of the Cox partial likelihood at beta = 0 (Breslow)
        order = np.argsort(-time, kind="stable")
        cum = np.cumsum(Xs[order], axis=0) / np.arange(1, n + 1)[:, None]
        means = np.empty_like(Xs)
        means[order] = cum
        # risk sets include ties: use the mean over all with time >= t
        ut = np.unique(time)
        for t in ut:
            m = time == t
            means[m] = Xs[time >= t].mean(axis=0)
        grad = (event[:, None] * (Xs - means)).sum(axis=0) / n
    lam_max = float(np.max(np.abs(grad)))
    ratio = lambda_min_ratio if lambda_min_ratio is not None else (0.01 if n < p else 1e-4)
    return lam_max * ratio ** (np.arange(nlambda) / (nlambda - 1))


def _logistic_tight(Xf: np.ndarray, y01: np.ndarray, lam: float, tol: float, beta=None, b0=None):
    """The LASSO logistic solution at ``lam`` (standardised scale) to a largest optimality
    (KKT) violation of ``tol``: glmnet's coordinate descent at its threshold, then again,
    warm-started, at thresholds 1e4 times smaller until the KKT conditions hold. Returns
    (intercept, coefficients, violation); exact zeros where glmnet has them (e.g. all at
    lambda.max)."""
    from gastrorad.models.glmnet_cd import logistic_kkt
    thresh, kkt = 1e-7, np.inf
    for _ in range(8):
        coefs, b0s, _, _, status, _ = _logistic_cd(Xf, y01, [lam], thresh=thresh, stop=False, beta=beta, b0=b0,
                                                   prev_lambda=0.0 if beta is None else lam)
        beta, b0 = coefs[0], float(b0s[0])
        kkt = float(logistic_kkt(Xf, y01, beta, b0, lam))
        if kkt <= tol or status == 2:
            break
        thresh *= 1e-4
    return b0, beta, kkt


def lasso_fit(X, y=None, lam: float = 0.1, *, kind: str = "logistic", time=None, event=None,
              tol: float = 1e-10, w_init: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """(intercept, coefficients) on the original scale at one lambda (intercept 0 for Cox),
    solved to a largest violation of the LASSO optimality conditions of ``tol`` (on the
    mean log-likelihood scale); a fit that does not get there warns
    (:class:`~gastrorad.errors.StatisticsWarning`). ``w_init``: coefficients on the original
    scale to start from (Cox only), e.g. the path's solution at this lambda, which makes the
    tight final fit a few Newton steps."""
    X = np.asarray(X, float)
    if kind == "logistic":
        Xf, mean, sd = _fortran_standardize(X)
        b0, beta, kkt = _logistic_tight(Xf, (np.asarray(y) > 0).astype(float), float(lam), tol)
        if not kkt <= tol:
            warnings.warn(f"LASSO logistic fit at lambda {lam:.4g} did not converge (largest optimality violation "
                          f"{kkt:.2g} > {tol:.2g}); its coefficients may differ from glmnet's in the last digits or "
                          "by a feature near zero", StatisticsWarning, stacklevel=2)
        b = beta / sd
        return b0 - float(np.sum(b * mean)), b
    from gastrorad.models.coxnet import CoxData
    Xs, mean, sd = _standardize(X)
    w0 = None if w_init is None else np.asarray(w_init, float) * sd
    return 0.0, CoxData(Xs, time, event).fit(lam, w0, tol=min(tol, 1e-10)) / sd


# Fold fits run the full-data path's lambdas without stopping (as cv.glmnet(lambda = ...)'s folds
# do); past this deviance ratio the partial likelihood is flat (coefficients diverge) and refitting
# only burns time
_COX_SATURATED = 0.999
# Cox fits: coordinate descent at glmnet's threshold (thresh 1e-7 on the null deviance / 2n), up
# to _COX_CD_PASSES passes per lambda. Where the partial likelihood flattens that stops visibly
# short of the optimum (lasso_cox_wide.R: cv.glmnet's curve moves by up to 0.59 between thresh
# 1e-7 and 1e-14), so a fit whose optimality (KKT) violation exceeds _COX_KKT is finished by up
# to _COX_NEWTON_STEPS proximal Newton steps (coxnet.py): the exact fits' curve, at a fraction of
# the passes thresh = 1e-14 takes. A fit Newton cannot finish has no finite optimum near; it and
# the smaller lambdas keep coordinate descent's fit, as glmnet's, and are reported.
_COX_THRESH = 1e-7
_COX_CD_PASSES = 2000
_COX_KKT = 1e-6
_COX_NEWTON_STEPS = 25
# coxnet's path-stopping constants (glmnet.control defaults as coxnet scales them: fdev x 100,
# devmax x 0.99 / 0.999) and the least number of lambdas before a stop (mnlam)
_COX_FDEV, _COX_DEVMAX, _MNLAM = 1e-3, 0.99, 5


class _CoxRisk:
    """Rows sorted by time with Breslow's death groups: ``start`` (first row at risk at each
    death time), ``dcount`` (deaths there), ``ngroup`` (how many death times each row is at
    risk for), the sorted ``event`` and the saturated log-likelihood -sum d log d."""

    def __init__(self, time, event):
        time, event = np.asarray(time, float), np.asarray(event, float)
        self.order = np.lexsort((1 - event, time))
        self.time, self.event = time[self.order], event[self.order]
        t = self.time
        death_times = np.unique(t[self.event == 1])
        self.start = np.searchsorted(t, death_times, side="left").astype(np.int64)
        self.dcount = np.array([((t == u) & (self.event == 1)).sum() for u in death_times], float)
        self.ngroup = np.searchsorted(death_times, t, side="right").astype(np.int64)
        self.saturated = float(-(self.dcount * np.log(self.dcount)).sum()) if len(self.dcount) else 0.0

    def deviances(self, eta: np.ndarray) -> np.ndarray:
        """Deviance 2 (loglik_saturated - loglik) of each row of ``eta`` (L, n; rows unsorted)."""
        from gastrorad.models.glmnet_cd import cox_loglik
        eta = np.atleast_2d(eta)[:, self.order]
        return np.array([2 * (self.saturated - cox_loglik(np.ascontiguousarray(e), self.event, self.start,
                                                           self.dcount)) for e in eta])


def cox_path(X, time, event, lambdas, *, tol: float = _COX_THRESH, stop: bool = False,
             failed: list | None = None) -> list[np.ndarray]:
    """LASSO-Cox coefficients (original scale) along decreasing ``lambdas`` by glmnet's coxnet
    algorithm (:func:`gastrorad.models.glmnet_cd.cox_path_cd`: warm starts, strong rules,
    IRLS with diagonal weights, active-set coordinate descent) to the convergence threshold
    ``tol`` (glmnet's ``thresh``; tighter than glmnet's default 1e-7, see ``_COX_THRESH``):
    the cross-validation fits of :func:`cv_lasso_cox`.

    With ``stop``, the path ends where glmnet's coxnet ends its own (default-lambda) path: after
    at least 5 lambdas, once the deviance ratio exceeds 0.99 or gained less than 0.1% (relative)
    over the last 4 lambdas. Without it, every lambda is fitted (cv.glmnet's folds, which get a
    user lambda sequence and never stop), except past a deviance ratio of 0.999, where the fit no
    longer converges and the last solution is repeated. Returned lists always have one entry per
    lambda; a stopped path repeats its last solution (see :func:`cox_path_length`). Lambdas whose
    fit did not converge are warned about, or appended to ``failed`` when a list is given."""
    from gastrorad.models.coxnet import CoxData
    from gastrorad.models.glmnet_cd import cox_kkt, cox_path_cd
    lambdas = np.asarray(lambdas, float)
    Xs, _, sd = _standardize(np.asarray(X, float))
    risk = _CoxRisk(time, event)
    Xf = np.asfortranarray(Xs[risk.order])
    p = Xf.shape[1]
    report = failed is None
    failed = [] if failed is None else failed
    if len(risk.dcount) == 0:
        return [np.zeros(p)] * len(lambdas)
    args = (risk.event, risk.start, risk.dcount, risk.ngroup)
    newton, failed_here = None, False
    beta, prev, out, ratios = np.zeros(p), 0.0, [], []
    null = None
    for m, lam in enumerate(lambdas):
        if ratios and ratios[-1] > _COX_SATURATED and not stop:
            out.append(out[-1])
            continue
        try:
            coefs, devr, _, conv, _ = cox_path_cd(Xf, *args, lambdas[m:m + 1], beta, float(tol), _COX_CD_PASSES,
                                                  False, prev, np.inf)
        except ZeroDivisionError:
            # a late risk set's sum of exp(eta) underflowed to 0: the linear predictor spans > ~700, the
            # coefficients ran off (no finite optimum near); the path ends on the last finite fit
            failed.append(float(lam))
            out += [out[-1] if out else np.zeros(p)] * (len(lambdas) - m)
            break
        beta, prev = coefs[0], float(lam)
        kkt, ll = cox_kkt(Xf, *args, beta, float(lam))
        ok = bool(conv[0]) and kkt <= _COX_KKT
        if not ok and not failed_here:
            # coordinate descent crawls where the partial likelihood is flat (collinear columns,
            # small lambdas): finish with proximal Newton steps on the exact Hessian
            if newton is None:
                newton = CoxData(Xf, risk.time, risk.event)  # already sorted: its order is the identity
            polished = newton.fit(float(lam), beta, tol=_COX_KKT, max_outer=_COX_NEWTON_STEPS, warn=False)
            if newton.converged:
                beta, ok = polished, True
                _, ll = cox_kkt(Xf, *args, beta, float(lam))
        if not ok:
            # no finite optimum near (the likelihood keeps rising along some direction): keep
            # coordinate descent's fit at glmnet's threshold, as glmnet does, for this lambda
            # and the smaller ones, which are flatter still
            failed_here = True
            failed.append(float(lam))
        if null is None:
            _, ll0 = cox_kkt(Xf, *args, np.zeros(p), float(lam))
            null = risk.saturated - ll0
        out.append(beta / sd)
        ratios.append((ll - (risk.saturated - null)) / null if null > 0 else 0.0)
        if stop and len(ratios) >= _MNLAM:
            r = ratios[-1]
            if r > _COX_DEVMAX or (r > 0 and (r - ratios[-_MNLAM]) / r < _COX_FDEV):
                out += [out[-1]] * (len(lambdas) - m - 1)
                break
    if failed and report:
        warnings.warn(f"LASSO-Cox path: {len(failed)} of {len(lambdas)} fits did not converge (lambda <= "
                      f"{max(failed):.3g}: the partial likelihood has no finite optimum near there)",
                      StatisticsWarning, stacklevel=2)
    return out


def cox_path_length(X, time, event, lambdas) -> int:
    """How many of ``lambdas`` glmnet's own Cox path on the data keeps before it stops (see
    :func:`cox_path`): ``cv.glmnet`` chooses lambda among these only."""
    return _kept(cox_path(X, time, event, lambdas, stop=True))


def _kept(path: list) -> int:
    """Length of a stopped path before the repeats of its last solution."""
    n = len(path)
    while n > 1 and path[n - 1] is path[n - 2]:
        n -= 1
    return n


def _logistic_cd(Xf: np.ndarray, y01: np.ndarray, lambdas, *, thresh: float, stop: bool, maxit: int = 100_000,
                 beta=None, b0=None, prev_lambda: float = 0.0):
    """:func:`gastrorad.models.glmnet_cd.logistic_path_cd` on a standardised Fortran-ordered
    design, started from the null model unless (``beta``, ``b0``) are given."""
    from gastrorad.models.glmnet_cd import logistic_path_cd
    ybar = float(y01.mean())
    if not 0 < ybar < 1:
        raise ValueError("LASSO logistic needs both outcome classes in the data (or in every training fold)")
    beta = np.zeros(Xf.shape[1]) if beta is None else np.asarray(beta, float)
    b0 = float(np.log(ybar / (1 - ybar))) if b0 is None else float(b0)
    return logistic_path_cd(Xf, y01, np.asarray(lambdas, float), beta, b0, float(thresh), int(maxit), bool(stop),
                            float(prev_lambda))


def _fortran_standardize(X: np.ndarray):
    Xs, mean, sd = _standardize(X)
    return np.asfortranarray(Xs), mean, sd


def logistic_path(X, y, lambdas, *, tol: float = 1e-7, stop: bool = True) -> list[tuple[float, np.ndarray]]:
    """LASSO logistic (intercept, coefficients) on the original scale along decreasing
    ``lambdas`` by glmnet's own algorithm (:mod:`gastrorad.models.glmnet_cd`: warm starts,
    strong rules, active-set coordinate descent inside IRLS), to glmnet's convergence
    threshold ``tol`` (``thresh``, 1e-7). With ``stop``, the path ends as glmnet's does on its
    default sequence (after at least 5 lambdas, once the deviance ratio exceeds 0.999 or grows
    by less than 1e-5: lognet's devmax, fdev); without it every lambda is fitted (as
    cv.glmnet's folds, given the full data's sequence). Either way a path whose fitted
    probabilities are all 0 or 1 ends there. The remaining lambdas repeat the last solution,
    as ``predict.glmnet`` extrapolates a short path."""
    Xf, mean, sd = _fortran_standardize(np.asarray(X, float))
    y01 = (np.asarray(y) > 0).astype(float)
    coefs, b0s, _, lmu, status, _ = _logistic_cd(Xf, y01, lambdas, thresh=tol, stop=stop)
    if status == 1:
        warnings.warn(f"A LASSO logistic path did not converge within 100000 coordinate passes (at lambda "
                      f"{lambdas[lmu - 1]:.4g}); its last coefficients may differ from glmnet's",
                      StatisticsWarning, stacklevel=2)
    out = []
    for m in range(lmu):
        b = coefs[m] / sd
        out.append((float(b0s[m]) - float(np.sum(b * mean)), b))
    return out + [out[-1]] * (len(lambdas) - lmu)


def logistic_path_length(X, y, lambdas) -> int:
    """How many of ``lambdas`` glmnet's own path on (X, y) keeps before it stops (see
    :func:`logistic_path`): ``cv.glmnet`` chooses lambda among these only."""
    return _kept(logistic_path(X, y, lambdas))


def lasso_path(X, y=None, lambdas=None, *, kind: str = "logistic", time=None, event=None) -> np.ndarray:
    """Coefficients (n_lambda, 1 + p) along ``lambdas`` (intercept first)."""
    lambdas = lambda_sequence(X, y, kind=kind, time=time, event=event) if lambdas is None else np.asarray(lambdas)
    return np.array([[*(lambda r: (r[0], *r[1]))(lasso_fit(X, y, lam, kind=kind, time=time, event=event))]
                     for lam in lambdas])


@dataclass
class LassoCV:
    lambdas: np.ndarray
    cvm: np.ndarray
    cvsd: np.ndarray
    lambda_min: float
    lambda_1se: float
    columns: list[str]
    coef_min: np.ndarray  # intercept first
    coef_1se: np.ndarray
    # ``fit.preval`` of ``cv.glmnet(keep = TRUE)``: each row's linear predictor at every lambda from the
    # fit without its fold (rows x lambdas): pre-validated values (Tibshirani and Efron 2002) of the
    # signature, for a model that combines it with other predictors on the same patients
    preval: np.ndarray | None = None
    i_min: int = 0
    i_1se: int = 0

    def prevalidated(self, which: str = "min") -> np.ndarray:
        """Out-of-fold linear predictor of every row at lambda.min or lambda.1se (NaN where its fold
        had no fit, e.g. a Cox fold without events)."""
        if self.preval is None:
            raise ValueError("this cross-validation kept no out-of-fold predictions")
        return self.preval[:, self.i_min if which == "min" else self.i_1se]

    def selected(self, which: str = "min") -> list[str]:
        coef = self.coef_min if which == "min" else self.coef_1se
        return [c for c, b in zip(self.columns, coef[1:]) if b != 0]

    def curve(self) -> pd.DataFrame:
        return pd.DataFrame({"lambda": self.lambdas, "cvm": self.cvm, "cvsd": self.cvsd})


def _fold_ids(n: int, foldid, nfolds: int, seed: int) -> np.ndarray:
    """Fold of each row: the given ``foldid`` (1-based, as R), or balanced folds drawn with ``seed``."""
    if foldid is None:
        rng = np.random.default_rng(seed)
        foldid = (np.arange(n) % nfolds + 1)[rng.permutation(n)]
    return np.asarray(foldid)


def _cv_choice(raw: np.ndarray, w: np.ndarray, lambdas: np.ndarray):
    """cv.glmnet's summary of fold errors (folds x lambdas, fold weights ``w``): weighted mean,
    its SE, and the indices of lambda.min and lambda.1se (the largest lambda within one SE)."""
    cvm = (w[:, None] * raw).sum(axis=0) / w.sum()
    cvsd = np.sqrt((w[:, None] * (raw - cvm) ** 2).sum(axis=0) / w.sum() / (len(w) - 1))
    if not np.isfinite(cvm).any():
        raise ValueError("cross-validation failed: no lambda has a finite cross-validated deviance")
    # a fold fit that diverged (no finite optimum; overflow) leaves its lambda out of the choice
    cvm = np.where(np.isfinite(cvm), cvm, np.nan)
    i_min = int(np.nanargmin(cvm))
    i_1se = int(np.flatnonzero(cvm <= cvm[i_min] + cvsd[i_min]).min())  # lambdas decrease
    return cvm, cvsd, i_min, i_1se


# The fold fits go to worker processes only when running them here would take this long: a new
# worker imports numpy and loads the compiled solver from numba's disk cache (about a second)
_LOGISTIC_PARALLEL_SECONDS = 4.0


def _interpolate_path(fold_lambdas: np.ndarray, B: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Rows of B (one per decreasing ``fold_lambdas``) at the lambdas ``s``, linear in lambda
    between neighbours and constant beyond either end: ``predict.glmnet``'s ``lambda.interp``."""
    lam = fold_lambdas[::-1]
    return np.column_stack([np.interp(s, lam, col[::-1]) for col in B.T])


def _logistic_fold(Xa: np.ndarray, y: np.ndarray, foldid: np.ndarray, lambdas: np.ndarray, nlambda: int | None):
    """Fold k's binomial deviance at each lambda, fitted without fold k, and the fold's linear
    predictors from that fit (lambdas x fold rows: cv.glmnet's ``fit.preval``). As cv.glmnet: with
    ``nlambda`` (no lambdas given by the user) each fold fits its own default path (its own
    lambda.max, and it may stop early) and is read at the full data's lambdas by linear
    interpolation; otherwise every fold fits the user's lambdas, all of them."""
    from gastrorad.models.glmnet_cd import linear_predictors

    def one(k) -> tuple[np.ndarray, np.ndarray]:
        test = foldid == k
        if nlambda is None:
            path = logistic_path(Xa[~test], y[~test], lambdas, stop=False)
            coef = np.array([[b0, *b] for b0, b in path])
        else:
            own = lambda_sequence(Xa[~test], y[~test], nlambda=nlambda)
            path = logistic_path(Xa[~test], y[~test], own)
            kept = _kept(path)
            coef = _interpolate_path(own[:kept], np.array([[b0, *b] for b0, b in path[:kept]]), lambdas)
        eta = linear_predictors(Xa[test], np.ascontiguousarray(coef[:, 1:]), np.ascontiguousarray(coef[:, 0]))
        p = np.clip(1 / (1 + np.exp(-eta)), 1e-5, 1 - 1e-5)
        yt = y[test][None, :]
        return np.mean(-2 * (yt * np.log(p) + (1 - yt) * np.log(1 - p)), axis=1), eta
    return one


def cv_lasso_logistic(X: pd.DataFrame, y, *, lambdas=None, foldid=None, nfolds: int = 10, seed: int = 0,
                      nlambda: int = 100, n_jobs: int | None = 1) -> LassoCV:
    """``cv.glmnet(X, y, family = "binomial", type.measure = "deviance")``; folds from
    ``foldid`` (1-based, as R) or drawn with ``seed``. The fold fits run on ``n_jobs``
    processes when they are slow enough (:func:`gastrorad.stats.resample.map_replicates`),
    with the serial result: the folds are fixed before any is fitted. Without ``lambdas`` each
    fold fits its own default path, read at the full data's lambdas by interpolation, as
    cv.glmnet does; with them every fold fits those. The coefficients at lambda.min and
    lambda.1se are the full data's path solutions, as ``coef(cv.glmnet)``."""
    cols = list(X.columns)
    Xa, y = X.to_numpy(float), np.asarray(y).astype(int)
    n = len(y)
    own = lambdas is None
    if own:
        lambdas = lambda_sequence(Xa, y, nlambda=nlambda)
        full = logistic_path(Xa, y, lambdas)
        lambdas = lambdas[:_kept(full)]  # glmnet's own path may stop early
    else:
        lambdas = np.asarray(lambdas, float)
        full = logistic_path(Xa, y, lambdas, stop=False)
    foldid = _fold_ids(n, foldid, nfolds, seed)
    folds = np.unique(foldid)
    fits = map_replicates(_logistic_fold(Xa, y, foldid, lambdas, nlambda if own else None), folds, n_jobs=n_jobs,
                          min_seconds=_LOGISTIC_PARALLEL_SECONDS)
    sizes = [(foldid == k).sum() for k in folds]
    cvm, cvsd, i_min, i_1se = _cv_choice(np.asarray([m for m, _ in fits]), np.asarray(sizes, float), lambdas)
    preval = np.full((n, len(lambdas)), np.nan)
    for k, (_, eta) in zip(folds, fits):
        preval[foldid == k] = eta.T
    fit_min, fit_1se = full[i_min], full[i_1se]
    return LassoCV(lambdas, cvm, cvsd, float(lambdas[i_min]), float(lambdas[i_1se]), cols,
                   np.concatenate([[fit_min[0]], fit_min[1]]), np.concatenate([[fit_1se[0]], fit_1se[1]]),
                   preval, i_min, i_1se)


def coxnet_deviance(X: np.ndarray, time: np.ndarray, event: np.ndarray, beta: np.ndarray) -> float:
    """Breslow partial-likelihood deviance 2 (loglik_saturated - loglik(beta)), as glmnet's
    ``coxnet.deviance`` (the saturated term is -sum d_g log d_g over tied death groups)."""
    return float(_CoxRisk(time, event).deviances(np.asarray(X, float) @ np.asarray(beta, float))[0])


def _cox_fold(Xa: np.ndarray, time: np.ndarray, event: np.ndarray, foldid: np.ndarray, lambdas: np.ndarray):
    """Fold k's partial-likelihood deviance difference at each lambda, fitted without fold k,
    and the lambdas whose fit did not converge."""
    from gastrorad.models.glmnet_cd import linear_predictors
    everyone = _CoxRisk(time, event)

    def one(k) -> tuple[np.ndarray, list[float], np.ndarray]:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn
        test = foldid == k
        failed: list[float] = []
        # the Newton steps' Hessians are BLAS products: one thread in every process, so that
        # n_jobs never changes how their sums are split
        with threadpool_limits(limits=1, user_api="blas"):
            B = np.array(cox_path(Xa[~test], time[~test], event[~test], lambdas, failed=failed))
        eta = linear_predictors(Xa, B, np.zeros(len(B)))
        row = everyone.deviances(eta) - _CoxRisk(time[~test], event[~test]).deviances(eta[:, ~test])
        return row, failed, eta[:, test]
    return one


def cv_lasso_cox(X: pd.DataFrame, time, event, *, lambdas=None, foldid=None, nfolds: int = 10, seed: int = 0,
                 nlambda: int = 100, n_jobs: int | None = 1) -> LassoCV:
    """``cv.glmnet(X, Surv(time, event), family = "cox")``: the grouped partial-likelihood
    deviance (Verweij and van Houwelingen): fold k scores dev(all data) - dev(data without
    k) at the coefficients fitted without k, divided by the fold's events; folds weighted
    by their events.

    Known difference: with tied death times glmnet's compiled deviance differs slightly from
    the Breslow deviance computed here (on R's colon data the CV curve differs by < 1e-3
    of ~14); the lambdas chosen and the selected variables were identical in the parity test.

    The fold fits run on ``n_jobs`` processes when they are slow enough, with the serial
    result (as :func:`cv_lasso_logistic`).
    """
    cols = list(X.columns)
    Xa = X.to_numpy(float)
    time, event = np.asarray(time, float), np.asarray(event).astype(int)
    n = len(time)
    failed: list[float] = []
    if lambdas is None:
        lambdas = lambda_sequence(Xa, kind="cox", time=time, event=event, nlambda=nlambda)
        full = cox_path(Xa, time, event, lambdas, stop=True, failed=failed)
        lambdas = lambdas[:_kept(full)]  # glmnet's own path may stop early
    else:
        lambdas = np.asarray(lambdas, float)
        full = None
    foldid = _fold_ids(n, foldid, nfolds, seed)
    # a fold without events has no deviance per event: cv.glmnet drops it (na.rm = TRUE)
    folds = [k for k in np.unique(foldid) if event[foldid == k].sum() > 0]
    rows = map_replicates(_cox_fold(Xa, time, event, foldid, lambdas), folds, n_jobs=n_jobs)
    w = [event[foldid == k].sum() for k in folds]
    raw = [row / ev for (row, _, _), ev in zip(rows, w)]
    failed += [lam for _, fold_failed, _ in rows for lam in fold_failed]
    preval = np.full((n, len(lambdas)), np.nan)
    for k, (_, _, eta) in zip(folds, rows):
        preval[foldid == k] = eta.T
    cvm, cvsd, i_min, i_1se = _cv_choice(np.asarray(raw), np.asarray(w, float), lambdas)
    if failed and min(lambdas[i_min], lambdas[i_1se]) <= max(failed):
        warnings.warn(f"LASSO-Cox cross-validation: {len(failed)} path fits did not converge, at lambdas down from "
                      f"{max(failed):.3g}, and the chosen lambda lies among them: the partial likelihood is close "
                      "to flat there (too many features for the events); treat the selection with caution",
                      StatisticsWarning, stacklevel=2)
    b_min, b_1se = (lasso_fit(Xa, lam=lambdas[i], kind="cox", time=time, event=event,
                              w_init=None if full is None else full[i])[1] for i in (i_min, i_1se))
    return LassoCV(lambdas, cvm, cvsd, float(lambdas[i_min]), float(lambdas[i_1se]), cols,
                   np.concatenate([[0.0], b_min]), np.concatenate([[0.0], b_1se]), preval, i_min, i_1se)
