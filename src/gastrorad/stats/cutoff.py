"""Cut-offs and the metrics of a dichotomised score.

A cut-off is fitted on one cohort (training) and applied unchanged to the others; the
Youden cut-off mirrors ``pROC::coords(roc, "best", best.method = "youden")``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from gastrorad.stats._checks import check_binary
from gastrorad.stats.roc import roc_curve


def youden_cutoff(y, score) -> float:
    """Threshold maximising sensitivity + specificity - 1 on the ROC's thresholds.

    The thresholds are pROC's midpoints, so the cut-off never coincides with an observed
    score. When several thresholds tie, the lowest is returned (pROC returns them all).
    """
    curve = roc_curve(y, score)
    j = curve.sensitivity + curve.specificity
    finite = np.isfinite(curve.thresholds)
    j = np.where(finite, j, -np.inf)
    best = np.flatnonzero(np.isclose(j, j.max(), rtol=0, atol=1e-12))
    return float(curve.thresholds[best[0]])


def confusion_matrix(y, score, threshold: float) -> pd.DataFrame:
    """2x2 table: rows observed (0, 1), columns predicted (0, 1) with ``score >= threshold``."""
    y, (score,) = check_binary(y, score)
    pred = (score >= threshold).astype(int)
    tab = np.zeros((2, 2), dtype=int)
    np.add.at(tab, (y, pred), 1)
    return pd.DataFrame(tab, index=pd.Index([0, 1], name="observed"), columns=pd.Index([0, 1], name="predicted"))


@dataclass
class ClassificationMetrics:
    threshold: float
    table: pd.DataFrame  # metric, estimate, lower, upper, numerator, denominator

    def summary(self) -> pd.DataFrame:
        return self.table


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial CI of k/n (R ``binom.test(k, n)$conf.int``).

    >>> [round(x, 4) for x in clopper_pearson(7, 10)]   # R: binom.test(7, 10)$conf.int 0.3475 0.9333
    [0.3475, 0.9333]
    """
    if n == 0:
        return np.nan, np.nan
    a = 1 - level
    lo = 0.0 if k == 0 else stats.beta.ppf(a / 2, k, n - k + 1)
    hi = 1.0 if k == n else stats.beta.ppf(1 - a / 2, k + 1, n - k)
    return float(lo), float(hi)


def classification_metrics(y, score, threshold: float, level: float = 0.95) -> ClassificationMetrics:
    """Accuracy, sensitivity, specificity, PPV and NPV at ``threshold`` (positive:
    ``score >= threshold``), each with an exact (Clopper-Pearson) CI."""
    tab = confusion_matrix(y, score, threshold).to_numpy()
    tn, fp, fn, tp = tab[0, 0], tab[0, 1], tab[1, 0], tab[1, 1]
    rows = []
    for name, k, n in (("accuracy", tp + tn, tab.sum()), ("sensitivity", tp, tp + fn), ("specificity", tn, tn + fp),
                       ("ppv", tp, tp + fp), ("npv", tn, tn + fn)):
        lo, hi = clopper_pearson(int(k), int(n), level)
        rows.append({"metric": name, "estimate": k / n if n else np.nan, "lower": lo, "upper": hi,
                     "numerator": int(k), "denominator": int(n)})
    return ClassificationMetrics(float(threshold), pd.DataFrame(rows))
