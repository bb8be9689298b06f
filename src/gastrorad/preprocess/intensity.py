"""HU windows and intensity normalisation of patches."""

from __future__ import annotations

import numpy as np


def apply_window(hu: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip HU values to the window [low, high] (the window is a truncation, as in the seeds)."""
    return np.clip(hu, low, high)


def normalise(x: np.ndarray, method: str, low: float, high: float) -> np.ndarray:
    """Normalise windowed values.

    - ``zscore``: subtract the patch mean, divide by its SD (S1, S5);
    - ``minus_one_one``: map the window [low, high] linearly to [-1, 1] (S2);
    - ``zero_one``: map the window to [0, 1] (S3, S4);
    - ``none``: leave HU.
    """
    x = x.astype(np.float32, copy=False)
    if method == "zscore":
        sd = float(x.std())
        return (x - float(x.mean())) / (sd if sd > 1e-6 else 1.0)
    if method == "minus_one_one":
        return (x - low) / (high - low) * 2.0 - 1.0
    if method == "zero_one":
        return (x - low) / (high - low)
    if method == "none":
        return x
    raise ValueError(f"unknown normalisation '{method}'")
