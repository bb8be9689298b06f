"""One place that checks survival outcomes (times and event indicators)."""

from __future__ import annotations

import numpy as np


def check_survival(time, event, *others) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Times as float (>= 0, no missing), events as 0/1 int, other arrays of the same length."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event)
    if time.ndim != 1 or time.shape != event.shape:
        raise ValueError("time and event must be 1-D arrays of the same length")
    if np.isnan(time).any():
        raise ValueError("time has missing values")
    if (time < 0).any():
        raise ValueError("time has negative values")
    ev = event.astype(float)
    if np.isnan(ev).any() or not np.isin(ev, (0.0, 1.0)).all():
        raise ValueError("event must be 0 (censored) or 1 (event)")
    out = []
    for o in others:
        o = np.asarray(o)
        if len(o) != len(time):
            raise ValueError("all arrays must have the same length as time")
        out.append(o)
    return time, ev.astype(int), out
