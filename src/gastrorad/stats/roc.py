"""ROC curves, AUC and DeLong's variance, confidence interval and paired test.

Conventions follow pROC with ``direction = "<"``: a higher score means the outcome
(``y = 1``, a "case") is more likely, and a patient is called positive when
``score >= threshold``. Thresholds are the midpoints between consecutive distinct
scores, plus -inf and +inf, as ``pROC::roc``. (pROC's default ``direction = "auto"``
picks the direction from the data, which inflates AUCs below 0.5; gastrorad never does.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from gastrorad.stats._checks import check_binary


@dataclass
class RocCurve:
    """Thresholds with their sensitivity and specificity, highest specificity first."""

    thresholds: np.ndarray
    sensitivity: np.ndarray
    specificity: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"threshold": self.thresholds, "sensitivity": self.sensitivity,
                             "specificity": self.specificity})


def roc_thresholds(score: np.ndarray) -> np.ndarray:
    """-inf, the midpoints between consecutive distinct scores, +inf (as ``pROC::roc``)."""
    u = np.unique(score)
    return np.concatenate([[-np.inf], (u[:-1] + u[1:]) / 2, [np.inf]])


def roc_curve(y, score) -> RocCurve:
    """ROC curve of ``score`` for the binary outcome ``y`` (mirrors ``pROC::roc(y, score, direction="<")``)."""
    y, (score,) = check_binary(y, score)
    thr = roc_thresholds(score)
    cases, controls = np.sort(score[y == 1]), np.sort(score[y == 0])
    # positives among cases: score >= threshold
    sens = 1.0 - np.searchsorted(cases, thr, side="left") / len(cases)
    spec = np.searchsorted(controls, thr, side="left") / len(controls)
    return RocCurve(thr, sens, spec)


def _sorted_midranks(v: np.ndarray) -> np.ndarray:
    """Midranks (1-based, ties averaged) of an already sorted array, in O(n)."""
    n = len(v)
    starts = np.flatnonzero(np.concatenate([[True], v[1:] != v[:-1]]))
    ends = np.concatenate([starts[1:], [n]])
    return np.repeat((starts + ends + 1) / 2.0, ends - starts)


def _placements(y: np.ndarray, scores: np.ndarray):
    """DeLong's structural components by the midrank algorithm (Sun and Xu 2014).

    ``scores`` is (k, n). Returns AUCs (k,), V10 (k, m) over cases and V01 (k, n0) over
    controls. One sort per score: the within-group midranks come from the combined order.
    """
    cases = y == 1
    m, n = int(cases.sum()), int((~cases).sum())
    aucs, v10, v01 = [], [], []
    for s in scores:
        order = np.argsort(s)  # stability is not needed: ties get their average rank anyway
        sv, is_case = s[order], cases[order]
        # Combined-sample rank minus within-group rank, per patient in score order ...
        within = np.empty(len(s))
        within[is_case] = _sorted_midranks(sv[is_case])
        within[~is_case] = _sorted_midranks(sv[~is_case])
        diff = np.empty(len(s))
        diff[order] = _sorted_midranks(sv) - within  # ... then back in patient order (models pair by patient)
        v10_k = diff[cases] / n
        v01_k = 1.0 - diff[~cases] / m
        aucs.append(v10_k.mean())
        v10.append(v10_k)
        v01.append(v01_k)
    return np.asarray(aucs), np.asarray(v10), np.asarray(v01)


def auc(y, score) -> float:
    """Area under the ROC curve: P(score of a case > score of a control) + 0.5 P(tie).

    >>> auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y, (score,) = check_binary(y, score)
    return float(_placements(y, score[None])[0][0])


def delong_covariance(y, *scores) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance matrix for models scored on the same patients.

    Mirrors ``pROC::var(roc, method="delong")`` (diagonal) and ``pROC::cov`` (off-diagonal):
    S = S10 / m + S01 / n with sample covariances (denominator m - 1, n - 1).
    """
    y, arrs = check_binary(y, *scores)
    aucs, v10, v01 = _placements(y, np.asarray(arrs))
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((len(arrs),) * 2)
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((len(arrs),) * 2)
    return aucs, s10 / m + s01 / n


@dataclass
class AucResult:
    """An AUC with its DeLong standard error and confidence interval."""

    auc: float
    se: float
    lower: float
    upper: float
    level: float = 0.95
    n_cases: int = 0
    n_controls: int = 0

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame([{"auc": self.auc, "se": self.se, f"lower_{self.level:g}": self.lower,
                              f"upper_{self.level:g}": self.upper, "cases": self.n_cases,
                              "controls": self.n_controls}])


def auc_ci_delong(y, score, level: float = 0.95) -> AucResult:
    """AUC with DeLong CI (mirrors ``pROC::ci.auc(method="delong")``: normal interval,
    truncated to [0, 1]).

    >>> r = auc_ci_delong([0, 0, 0, 1, 1, 1, 0, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.7, 0.3, 0.2, 0.9, 0.55, 0.6])
    >>> round(r.auc, 4), round(r.lower, 4), round(r.upper, 4)   # R: 95% CI: 0.626-1 (DeLong)
    (0.88, 0.626, 1.0)
    """
    y, (score,) = check_binary(y, score)
    aucs, cov = delong_covariance(y, score)
    a, se = float(aucs[0]), float(np.sqrt(cov[0, 0]))
    zq = float(stats.norm.ppf(1 - (1 - level) / 2))
    return AucResult(a, se, max(0.0, a - zq * se), min(1.0, a + zq * se), level, int(y.sum()), int((1 - y).sum()))


@dataclass
class DelongTest:
    """Paired DeLong test of two correlated AUCs."""

    auc1: float
    auc2: float
    difference: float
    se: float
    z: float
    p_value: float
    lower: float
    upper: float

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame([self.__dict__])


def delong_test(y, score1, score2, level: float = 0.95) -> DelongTest:
    """Paired DeLong test, H0: AUC1 = AUC2 (mirrors ``pROC::roc.test(method="delong", paired=TRUE)``).

    z = (AUC1 - AUC2) / sqrt(V1 + V2 - 2 Cov), two-sided P; the CI is for the difference.

    >>> y = [0, 0, 0, 1, 1, 1, 0, 1, 0, 1]
    >>> a = [0.1, 0.4, 0.35, 0.8, 0.7, 0.3, 0.2, 0.9, 0.55, 0.6]
    >>> b = [0.2, 0.5, 0.1, 0.6, 0.4, 0.45, 0.3, 0.7, 0.65, 0.35]
    >>> t = delong_test(y, a, b)   # pROC: roc.test(roc(y, a), roc(y, b), method = "delong", paired = TRUE)
    >>> round(t.auc1, 4), round(t.auc2, 4), round(t.z, 4), round(t.p_value, 4)   # R: Z 0.8528, p 0.3938
    (0.88, 0.72, 0.8528, 0.3938)
    """
    aucs, cov = delong_covariance(y, score1, score2)
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = float(aucs[0] - aucs[1])
    se = float(np.sqrt(max(var, 0.0)))
    z = diff / se if se > 0 else (0.0 if diff == 0 else np.inf * np.sign(diff))
    p = float(2 * stats.norm.sf(abs(z)))
    zq = float(stats.norm.ppf(1 - (1 - level) / 2))
    return DelongTest(float(aucs[0]), float(aucs[1]), diff, se, float(z), p, diff - zq * se, diff + zq * se)


def delong_compare(y, scores: dict[str, np.ndarray], reference: str | None = None, level: float = 0.95) -> pd.DataFrame:
    """AUC with DeLong CI for each model and the paired DeLong test against ``reference``
    (default: the first model), from one pass over the data (one sort per model).

    Columns: model, auc, se, lower, upper, difference, z, p (NaN for the reference).
    """
    names = list(scores)
    reference = names[0] if reference is None else reference
    aucs, cov = delong_covariance(y, *[scores[k] for k in names])
    zq = stats.norm.ppf(1 - (1 - level) / 2)
    r = names.index(reference)
    rows = []
    for i, name in enumerate(names):
        se = float(np.sqrt(cov[i, i]))
        row = {"model": name, "auc": float(aucs[i]), "se": se, "lower": max(0.0, aucs[i] - zq * se),
               "upper": min(1.0, aucs[i] + zq * se), "difference": np.nan, "z": np.nan, "p": np.nan}
        if i != r:
            var = cov[i, i] + cov[r, r] - 2 * cov[i, r]
            diff = float(aucs[i] - aucs[r])
            z = diff / np.sqrt(var) if var > 0 else np.nan
            row.update(difference=diff, z=z, p=float(2 * stats.norm.sf(abs(z))) if np.isfinite(z) else np.nan)
        rows.append(row)
    return pd.DataFrame(rows)
