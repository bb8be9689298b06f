"""Variable selection: univariable screening and backward stepwise selection by AIC.

:func:`backward_aic` mirrors ``MASS::stepAIC(fit, direction = "backward")``: from the full
model, repeatedly drop the term whose removal lowers the AIC (-2 log-likelihood + 2 df)
the most, until no removal lowers it (by more than 1e-7, as stepAIC). A term may span
several columns (the indicators of a categorical variable) and is dropped whole.
Logistic models are fitted by maximum likelihood (statsmodels), Cox models with Efron ties.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats


def _logistic_loglik(df: pd.DataFrame, outcome: str, cols: list[str]) -> tuple[float, dict]:
    import statsmodels.api as sm
    y = df[outcome].to_numpy(float)
    X = np.ones((len(df), 1)) if not cols else sm.add_constant(df[cols].to_numpy(float), has_constant="add")
    res = sm.Logit(y, X).fit(disp=0, method="newton", maxiter=100, tol=1e-12)
    names = ["(Intercept)", *cols]
    return float(res.llf), dict(zip(names, res.params)), res


def _cox_loglik(df: pd.DataFrame, time: str, event: str, cols: list[str]) -> tuple[float, dict]:
    if not cols:
        return _cox_null_loglik(df[time].to_numpy(float), df[event].to_numpy(int)), {}, None
    from gastrorad.stats.survival.cox import fit_cox
    r = fit_cox(df, time, event, cols)
    return r.loglik, dict(zip(cols, r.coef)), r


def _cox_null_loglik(time: np.ndarray, event: np.ndarray) -> float:
    """Efron log partial likelihood at beta = 0."""
    ll = 0.0
    for t in np.unique(time[event == 1]):
        d = int(np.sum((time == t) & (event == 1)))
        n = int(np.sum(time >= t))
        ll -= sum(np.log(n - k) for k in range(d))  # Efron at beta = 0: risk-set sums n - k of the d tied deaths
    return float(ll)


@dataclass
class StepResult:
    terms: list[str]
    coef: dict
    aic: float
    history: list[dict] = field(default_factory=list)
    model: object = None

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame(self.history)


def backward_aic(df: pd.DataFrame, terms: dict[str, list[str]], *, kind: str = "logistic", outcome: str = "label",
                 time: str = "time", event: str = "event") -> StepResult:
    """Backward selection by AIC over ``terms`` (term name -> its design columns)."""
    def fit(names):
        cols = [c for n in names for c in terms[n]]
        if kind == "logistic":
            ll, coef, model = _logistic_loglik(df, outcome, cols)
            k = len(cols) + 1
        else:
            ll, coef, model = _cox_loglik(df, time, event, cols)
            k = len(cols)
        return -2 * ll + 2 * k, coef, model

    current = list(terms)
    aic, coef, model = fit(current)
    history = [{"step": 0, "removed": None, "aic": aic}]
    while current:
        trials = [(fit([t for t in current if t != drop])[0], drop) for drop in current]
        best_aic, drop = min(trials, key=lambda x: x[0])
        if best_aic >= aic - 1e-7:
            break
        current.remove(drop)
        aic, coef, model = fit(current)
        history.append({"step": len(history), "removed": drop, "aic": aic})
    return StepResult(current, coef, aic, history, model)


def univariable_screen(df: pd.DataFrame, terms: dict[str, list[str]], *, kind: str = "logistic", outcome: str = "label",
                       time: str = "time", event: str = "event", p_threshold: float = 0.05) -> pd.DataFrame:
    """Each term alone: likelihood-ratio P against the null model; ``selected`` when P < threshold."""
    rows = []
    if kind == "logistic":
        ll0 = _logistic_loglik(df, outcome, [])[0]
    else:
        ll0 = _cox_null_loglik(df[time].to_numpy(float), df[event].to_numpy(int))
    for name, cols in terms.items():
        ll = (_logistic_loglik(df, outcome, cols) if kind == "logistic" else _cox_loglik(df, time, event, cols))[0]
        chi = 2 * (ll - ll0)
        p = float(stats.chi2.sf(chi, len(cols)))
        rows.append({"term": name, "df": len(cols), "lr_chisq": chi, "p": p, "selected": p < p_threshold})
    return pd.DataFrame(rows)
