"""Nomograms of linear models (logistic or Cox), as ``rms::nomogram``.

Each predictor gets an axis over its data range, ticked as R's ``pretty(range, n = 10)``;
its points are ``sc * (x beta - min over its axis of x beta)``, where ``sc`` gives 100 points
to the predictor with the widest range of effect. Total points map back to the linear
predictor, lp = intercept + sum of axis minima + total / sc, and from there to a
probability (logistic) or to t-year survival (Cox: S0(t)^exp(lp)). The points calculator
for one patient reproduces the model's linear predictor exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


def r_pretty(lo: float, hi: float, n: int = 5, min_n: int | None = None, shrink: float = 0.75,
             high_u_fact: tuple[float, float] = (1.5, 2.75), eps_correction: int = 0) -> np.ndarray:
    """R's ``pretty(c(lo, hi), n)``: about n + 1 equally spaced round values covering the range
    (port of the algorithm of R's ``R_pretty``, from its published description)."""
    min_n = n // 3 if min_n is None else min_n
    rounding_eps = 1e-10
    h, h5 = high_u_fact[0], 0.5 + 1.5 * high_u_fact[1]
    dx = hi - lo
    if dx == 0 and hi == 0:
        cell, i_small = 1.0, True
    else:
        cell = max(abs(lo), abs(hi))
        u = 1 + (1 / (1 + h) if h5 >= 1.5 * h + 0.5 else 1.5 / (1 + h5))
        u *= max(1, n) * np.finfo(float).eps
        i_small = dx < cell * u * 3
    if i_small:
        if cell > 10:
            cell = 9 + cell / 10
        cell *= shrink
        if min_n > 1:
            cell /= min_n
    else:
        cell = dx
        if n > 1:
            cell /= n
    if cell < 20 * np.finfo(float).tiny:
        cell = 20 * np.finfo(float).tiny
    elif cell * 10 > np.finfo(float).max:
        cell = 0.1 * np.finfo(float).max
    base = 10.0 ** math.floor(math.log10(cell))
    unit = base
    if 2 * base - cell < h * (cell - unit):
        unit = 2 * base
        if 5 * base - cell < h5 * (cell - unit):
            unit = 5 * base
            if 10 * base - cell < h * (cell - unit):
                unit = 10 * base
    ns = math.floor(lo / unit + rounding_eps)
    nu = math.ceil(hi / unit - rounding_eps)
    while ns * unit > lo + rounding_eps * unit:
        ns -= 1
    while nu * unit < hi - rounding_eps * unit:
        nu += 1
    k = int(0.5 + nu - ns)
    if k < min_n:
        k = min_n - k
        if ns >= 0:
            nu += k / 2
            ns -= k / 2 + k % 2
        else:
            ns -= k / 2
            nu += k / 2 + k % 2
    return np.arange(ns, nu + 1) * unit


@dataclass
class Axis:
    name: str
    values: list  # tick values (numbers) or levels (categories)
    xbeta: np.ndarray
    categorical: bool
    coef: float | dict = 0.0  # slope (continuous) or level -> coefficient (categorical)

    def contribution(self, value) -> float:
        if self.categorical:
            return float(self.coef.get(value, 0.0))
        return float(self.coef * float(value))


@dataclass
class Nomogram:
    axes: list[Axis]
    intercept: float
    sc: float  # points per unit of linear predictor
    kind: str = "logistic"
    baseline_survival: dict = field(default_factory=dict)  # horizon -> S0(t) at x = 0 (Cox)

    def points_table(self) -> pd.DataFrame:
        """Points of every tick or level of every axis (as the rms nomogram object)."""
        rows = []
        for a in self.axes:
            lo = a.xbeta.min()
            for v, xb in zip(a.values, a.xbeta):
                rows.append({"variable": a.name, "value": v, "xbeta": xb, "points": (xb - lo) * self.sc})
        return pd.DataFrame(rows)

    def patient_points(self, patient: dict) -> dict:
        """Points per predictor and in total for one patient, and the linear predictor and
        outcome they map to."""
        pts = {}
        for a in self.axes:
            pts[a.name] = (a.contribution(patient[a.name]) - a.xbeta.min()) * self.sc
        total = sum(pts.values())
        lp = self.lp_from_points(total)
        out = {"points": pts, "total": total, "lp": lp}
        if self.kind == "logistic":
            out["probability"] = 1 / (1 + math.exp(-lp))
        else:
            out["survival"] = {t: s0 ** math.exp(lp) for t, s0 in self.baseline_survival.items()}
        return out

    def lp_from_points(self, total: float) -> float:
        return self.intercept + sum(a.xbeta.min() for a in self.axes) + total / self.sc


def build_nomogram(terms: dict, data: pd.DataFrame, *, intercept: float = 0.0, kind: str = "logistic",
                   baseline_survival: dict | None = None, nint: int = 10) -> Nomogram:
    """``terms``: variable -> slope (continuous) or {level: coefficient} (categorical, the
    reference level 0 or absent). Continuous axes span the data range of the variable,
    ticked by :func:`r_pretty` (as rms's nomogram with its default datadist)."""
    axes = []
    for name, coef in terms.items():
        if isinstance(coef, dict):
            levels = sorted(pd.unique(data[name].dropna()), key=str)
            xb = np.array([float(coef.get(v, 0.0)) for v in levels])
            axes.append(Axis(name, list(levels), xb, True, dict(coef)))
        else:
            x = pd.to_numeric(data[name], errors="coerce").dropna()
            distinct = np.unique(x)
            # few distinct values (a score, a stage): ticks at the values themselves, as rms shows them
            ticks = distinct if len(distinct) <= nint // 2 else r_pretty(float(x.min()), float(x.max()), nint)
            axes.append(Axis(name, ticks.tolist(), float(coef) * ticks, False, float(coef)))
    widest = max(a.xbeta.max() - a.xbeta.min() for a in axes)
    return Nomogram(axes, intercept, 100.0 / widest, kind, dict(baseline_survival or {}))
