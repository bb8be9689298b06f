"""Fusion models fitted on the training cohort and applied to every cohort, and cut-offs
locked on training.

- :func:`fit_logistic`: logistic regression (statsmodels ML; ``glm(family = binomial)``)
  with OR, Wald CI and P per term.
- :func:`fit_cox_model`: Cox regression (Efron) with HR, CI, P and the cox.zph check.
- :func:`lock_cutoff`: Youden on training (binary, or t-year status for survival), the
  training median, or a fixed value; the same number is applied to every cohort.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats


@dataclass
class LogisticModel:
    columns: list[str]
    coef: np.ndarray  # intercept first
    table: pd.DataFrame  # term, coef, se, z, p, or, or_lower, or_upper

    def linear_predictor(self, df: pd.DataFrame) -> np.ndarray:
        return self.coef[0] + df[self.columns].to_numpy(float) @ self.coef[1:]

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return 1 / (1 + np.exp(-self.linear_predictor(df)))


def fit_logistic(df: pd.DataFrame, outcome: str, columns: list[str], *, level: float = 0.95) -> LogisticModel:
    """Maximum-likelihood logistic regression (as ``glm(y ~ ., family = binomial)``)."""
    import statsmodels.api as sm
    data = df[[outcome, *columns]].dropna()
    X = sm.add_constant(data[columns].to_numpy(float), has_constant="add")
    res = sm.Logit(data[outcome].to_numpy(float), X).fit(disp=0, method="newton", maxiter=100, tol=1e-12)
    z = stats.norm.ppf(1 - (1 - level) / 2)
    b, se = np.asarray(res.params), np.asarray(res.bse)
    table = pd.DataFrame({"term": ["(Intercept)", *columns], "coef": b, "se": se, "z": b / se,
                          "p": 2 * stats.norm.sf(np.abs(b / se)), "or": np.exp(b), "or_lower": np.exp(b - z * se),
                          "or_upper": np.exp(b + z * se)})
    return LogisticModel(list(columns), b, table)


def fit_cox_model(df: pd.DataFrame, time: str, event: str, columns: list[str], *, level: float = 0.95):
    """Cox model with HRs and the proportional-hazards test; returns (CoxResult, cox.zph table)."""
    from gastrorad.stats.survival import cox_zph, fit_cox
    res = fit_cox(df, time, event, columns, level=level)
    return res, cox_zph(res).table


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
