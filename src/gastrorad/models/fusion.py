"""Fusion models fitted on the training cohort and applied to every cohort, and cut-offs
locked on training.

- :func:`fit_logistic`: logistic regression (R's IRLS, ``glm(family = binomial)``) with OR,
  Wald CI and P per term, log-likelihood, AIC and BIC; warns on separation as R does.
- :func:`fit_cox_model`: Cox regression (Efron) with HR, CI, P and the cox.zph check.
- :func:`lock_cutoff`: Youden on training (binary, or t-year status for survival), the
  training median, or a fixed value; the same number is applied to every cohort.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from gastrorad.errors import StatisticsWarning


@dataclass
class LogisticModel:
    columns: list[str]
    coef: np.ndarray  # intercept first
    table: pd.DataFrame  # term, coef, se, z, p, or, or_lower, or_upper
    loglik: float = float("nan")  # at the estimate, as logLik(glm)
    n: int = 0
    converged: bool = True

    @property
    def aic(self) -> float:
        """-2 loglik + 2 k (k coefficients, intercept included), as ``AIC(glm)``."""
        return -2 * self.loglik + 2 * len(self.coef)

    @property
    def bic(self) -> float:
        """-2 loglik + k log n, as ``BIC(glm)``."""
        return -2 * self.loglik + np.log(self.n) * len(self.coef)

    def linear_predictor(self, df: pd.DataFrame) -> np.ndarray:
        return self.coef[0] + df[self.columns].to_numpy(float) @ self.coef[1:]

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return 1 / (1 + np.exp(-self.linear_predictor(df)))


_DBL_EPS = np.finfo(float).eps


def _logit_inv(eta: np.ndarray) -> np.ndarray:
    """R's binomial()$linkinv (C ``logit_linkinv``): exp(eta) clamped to [eps, 1/eps] beyond |eta| > 30."""
    with np.errstate(over="ignore"):
        tmp = np.where(eta < -30, _DBL_EPS, np.where(eta > 30, 1 / _DBL_EPS, np.exp(np.clip(eta, -30, 30))))
    return tmp / (1 + tmp)


def _logit_mu_eta(eta: np.ndarray) -> np.ndarray:
    """R's binomial()$mu.eta: d mu / d eta, eps beyond |eta| > 30."""
    e = np.exp(np.clip(eta, -30, 30))
    return np.where(np.abs(eta) > 30, _DBL_EPS, e / (1 + e) ** 2)


def _binomial_deviance(y: np.ndarray, mu: np.ndarray) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(2 * np.sum(np.where(y > 0, -np.log(mu), -np.log(1 - mu))))


def glm_logit(X: np.ndarray, y: np.ndarray, *, epsilon: float = 1e-8, maxit: int = 25):
    """Iteratively reweighted least squares as R's ``glm.fit`` for ``binomial(link = "logit")``
    (start mu = (y + 1/2) / 2, convergence when |dev - dev_old| / (|dev| + 0.1) < 1e-8, at most
    25 iterations). Returns (coef, covariance, mu, converged); the covariance is R's: the
    inverse of X'WX with the weights of the last iteration."""
    mu = (y + 0.5) / 2
    eta = np.log(mu / (1 - mu))
    devold = _binomial_deviance(y, mu)
    converged, coef, xtwx = False, np.zeros(X.shape[1]), None
    for _ in range(maxit):
        mu_eta = _logit_mu_eta(eta)
        z = eta + (y - mu) / mu_eta
        w = np.sqrt(mu_eta ** 2 / (mu * (1 - mu)))
        coef = np.linalg.lstsq(X * w[:, None], z * w, rcond=None)[0]
        xtwx = (X * (w ** 2)[:, None]).T @ X
        eta = X @ coef
        mu = _logit_inv(eta)
        dev = _binomial_deviance(y, mu)
        if abs(dev - devold) / (abs(dev) + 0.1) < epsilon:
            converged = True
            break
        devold = dev
    return coef, np.linalg.inv(xtwx), mu, converged


def fit_logistic(df: pd.DataFrame, outcome: str, columns: list[str], *, level: float = 0.95) -> LogisticModel:
    """Maximum-likelihood logistic regression, mirroring ``glm(y ~ ., family = binomial)``:
    R's IRLS (:func:`glm_logit`), Wald SEs from ``summary.glm``, ``logLik``, ``AIC``, ``BIC``.

    As R, a fit that did not converge in 25 iterations or whose fitted probabilities reach 0
    or 1 (10 x machine epsilon; complete or quasi-complete separation) raises a StatisticsWarning
    ("algorithm did not converge", "fitted probabilities numerically 0 or 1 occurred"): the
    coefficients then run off to infinity and their ORs and CIs are not meaningful.
    Collinear columns are an error.
    """
    import warnings
    data = df[[outcome, *columns]].dropna()
    X = np.column_stack([np.ones(len(data)), data[columns].to_numpy(float)])
    y = data[outcome].to_numpy(float)
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise ValueError(f"logistic model: the columns {list(columns)} are collinear (or constant)")
    b, cov, mu, converged = glm_logit(X, y)
    what = f"logistic model ({', '.join(columns)})"
    if not converged:
        warnings.warn(f"{what}: glm.fit: algorithm did not converge", StatisticsWarning, stacklevel=2)
    if (mu > 1 - 10 * _DBL_EPS).any() or (mu < 10 * _DBL_EPS).any():
        warnings.warn(f"{what}: glm.fit: fitted probabilities numerically 0 or 1 occurred (complete or "
                      "quasi-complete separation: a coefficient runs off to infinity; its OR and CI are not "
                      "meaningful)", StatisticsWarning, stacklevel=2)
    se = np.sqrt(np.diag(cov))
    z = stats.norm.ppf(1 - (1 - level) / 2)
    with np.errstate(over="ignore"):
        table = pd.DataFrame({"term": ["(Intercept)", *columns], "coef": b, "se": se, "z": b / se,
                              "p": 2 * stats.norm.sf(np.abs(b / se)), "or": np.exp(b),
                              "or_lower": np.exp(b - z * se), "or_upper": np.exp(b + z * se)})
    with np.errstate(divide="ignore"):
        loglik = float(np.sum(np.where(y > 0, np.log(mu), np.log(1 - mu))))
    return LogisticModel(list(columns), b, table, loglik, len(data), converged)


def fit_cox_model(df: pd.DataFrame, time: str, event: str, columns: list[str], *, level: float = 0.95):
    """Cox model with HRs and the proportional-hazards test; returns (CoxResult, cox.zph table)."""
    from gastrorad.stats.survival import cox_zph, fit_cox
    res = fit_cox(df, time, event, columns, level=level)
    try:
        return res, cox_zph(res).table
    except ValueError as exc:  # e.g. one event: no proportional-hazards test exists, the fit itself stands
        import warnings
        warnings.warn(f"proportional-hazards test not available: {exc}", StatisticsWarning, stacklevel=2)
        return res, pd.DataFrame({"covariate": [*columns, "GLOBAL"], "chisq": np.nan,
                                  "df": [*([1] * len(columns)), len(columns)], "p": np.nan})


def lock_cutoff(score, *, y=None, time=None, event=None, method: str = "youden", horizon: float | None = None,
                value: float | None = None) -> float:
    """A cut-off computed on the training cohort only.

    ``youden`` with ``y`` (binary); ``youden`` with ``time``/``event``/``horizon`` uses the
    t-year status (event by the horizon = 1, event-free beyond it = 0; censored before it
    left out); ``median`` is the training median; ``fixed`` returns ``value``.
    """
    from gastrorad.stats.cutoff import youden_cutoff
    score = np.asarray(score, float)
    if method == "fixed":
        if value is None:
            raise ValueError("a fixed cut-off needs a value")
        return float(value)
    if method == "median":
        return float(np.median(score))
    if method != "youden":
        raise ValueError("method must be 'youden', 'median' or 'fixed'")
    if y is not None:
        return youden_cutoff(np.asarray(y).astype(int), score)
    if time is None or event is None or horizon is None:
        raise ValueError("Youden for survival needs time, event and horizon")
    time, event = np.asarray(time, float), np.asarray(event).astype(int)
    status = np.where(time > horizon, 0, np.where(event == 1, 1, -1))
    keep = status >= 0
    return youden_cutoff(status[keep], score[keep])
