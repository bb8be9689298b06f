"""Intraclass correlation for re-segmentation reproducibility (S5: features with ICC > 0.8 kept).

Forms of McGraw and Wong (1996), from the two-way ANOVA of an n subjects x k readings table:
``ICC(A,1)`` two-way, absolute agreement, single measurement (default: the same reader
re-segmenting a month later, where a systematic shift between sessions should count as
disagreement); ``ICC(C,1)`` consistency; ``ICC(1)`` one-way. They equal ``psych::ICC``'s
ICC2, ICC3 and ICC1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def icc(ratings: np.ndarray, form: str = "A,1") -> float:
    """ICC of an (n subjects, k readings) array."""
    Y = np.asarray(ratings, float)
    n, k = Y.shape
    grand = Y.mean()
    ss_rows = k * ((Y.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((Y.mean(axis=0) - grand) ** 2).sum()
    ss_tot = ((Y - grand) ** 2).sum()
    ss_err = ss_tot - ss_rows - ss_cols
    msr, msc = ss_rows / (n - 1), ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    msw = (ss_cols + ss_err) / (n * (k - 1))
    if ss_tot == 0:  # a constant feature (e.g. a channel a ReLU keeps at zero) has no reliability to speak of
        if form not in ("A,1", "C,1", "1"):
            raise ValueError("form must be 'A,1', 'C,1' or '1'")
        return float("nan")
    if form == "A,1":
        return float((msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n))
    if form == "C,1":
        return float((msr - mse) / (msr + (k - 1) * mse))
    if form == "1":
        return float((msr - msw) / (msr + (k - 1) * msw))
    raise ValueError("form must be 'A,1', 'C,1' or '1'")


def icc_filter(features: pd.DataFrame, *, patient: str = "patient_id", reader: str = "reader", threshold: float = 0.8,
               form: str = "A,1") -> pd.DataFrame:
    """ICC of every feature column over the patients read more than once; ``keep`` when ICC > threshold."""
    cols = [c for c in features.columns if c not in (patient, reader)]
    wide = {c: features.pivot_table(index=patient, columns=reader, values=c).dropna() for c in cols}
    rows = [{"feature": c, "icc": icc(w.to_numpy(), form), "n": len(w)} for c, w in wide.items()]
    out = pd.DataFrame(rows)
    out["keep"] = out["icc"] > threshold
    return out
