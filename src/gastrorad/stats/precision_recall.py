"""Precision-recall curve and average precision (scikit-learn's definitions).

Average precision is the step-wise sum AP = sum_n (R_n - R_{n-1}) P_n over thresholds at
each distinct score, without interpolation (``sklearn.metrics.average_precision_score``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve as _prc

from gastrorad.stats._checks import check_binary


def precision_recall(y, score) -> tuple[pd.DataFrame, float]:
    """(curve with threshold, precision, recall; average precision)."""
    y, (score,) = check_binary(y, score)
    precision, recall, thr = _prc(y, score)
    curve = pd.DataFrame({"threshold": np.append(thr, np.inf), "precision": precision, "recall": recall})
    return curve, float(average_precision_score(y, score))
