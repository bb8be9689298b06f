"""Patient-level scores from slice or patch scores: mean, max, or mean of the top k (S4: k = 10)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def aggregate_scores(scores: np.ndarray, method: str = "mean", top_k: int = 10) -> float:
    s = np.asarray(scores, dtype=float)
    if s.size == 0:
        raise ValueError("no score to aggregate")
    if method == "mean":
        return float(s.mean())
    if method == "max":
        return float(s.max())
    if method == "topk":
        return float(np.sort(s)[::-1][:top_k].mean())
    raise ValueError("aggregate must be 'mean', 'max' or 'topk'")


def patient_scores(df: pd.DataFrame, method: str = "mean", top_k: int = 10, *, score: str = "score",
                   by: tuple[str, ...] = ("patient_id", "cohort")) -> pd.DataFrame:
    """One row per patient (and the other ``by`` columns) with the aggregated ``score``."""
    return (df.groupby(list(by), sort=True)[score].apply(lambda s: aggregate_scores(s.to_numpy(), method, top_k))
            .reset_index())
