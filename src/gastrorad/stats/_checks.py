"""Checking the binary outcome and scores every statistic receives (one place, as STYLE asks)."""

from __future__ import annotations

import numpy as np


def check_binary(y, *scores, name: str = "y") -> tuple[np.ndarray, list[np.ndarray]]:
    """Return ``y`` as a 0/1 int array and each score as float arrays of the same length.

    Raises ValueError for non-binary labels, missing values, length mismatches, or a
    label with a single class (no ROC exists then).
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    if y.dtype == bool:
        y = y.astype(int)
    try:
        yf = y.astype(float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be 0/1") from exc
    if np.isnan(yf).any():
        raise ValueError(f"{name} has missing values")
    if not np.isin(yf, (0.0, 1.0)).all():
        raise ValueError(f"{name} must be 0/1, found {sorted(set(yf.tolist()) - {0.0, 1.0})[:5]}")
    y = yf.astype(int)
    if y.min() == y.max():
        raise ValueError(f"{name} has a single class; both outcomes are needed")
    out = []
    for s in scores:
        s = np.asarray(s, dtype=float)
        if s.shape != y.shape:
            raise ValueError(f"scores of length {s.shape} do not match {name} of length {y.shape}")
        if np.isnan(s).any():
            raise ValueError("scores have missing values")
        out.append(s)
    return y, out


def midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (R's ``rank(ties.method="average")``)."""
    from scipy.stats import rankdata
    return rankdata(x, method="average")
