"""Nomogram drawing: a points ruler, one axis per predictor, total points, and the outcome
axis (probability, or t-year survival for each horizon), readable when printed."""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit

from gastrorad.figures.style import styled


def _outcome_axis(nomo, horizon=None, time_unit: str = ""):
    lo_total = 0.0
    hi_total = sum((a.xbeta.max() - a.xbeta.min()) * nomo.sc for a in nomo.axes)
    if nomo.kind == "logistic":
        fun, label, ticks = (lambda lp: float(expit(lp))), "Predicted probability", \
            [0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]
    else:
        s0 = nomo.baseline_survival[horizon]
        unit = f" {time_unit}" if time_unit else ""
        fun, label, ticks = (lambda lp: s0 ** float(np.exp(min(lp, 700.0)))), f"Survival at {horizon:g}{unit}", \
            [0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    grid = np.linspace(lo_total, hi_total, 400)
    vals = np.array([fun(nomo.lp_from_points(t)) for t in grid])
    pos = []
    for v in ticks:
        order = np.argsort(vals)
        if vals.min() <= v <= vals.max():
            pos.append((float(np.interp(v, vals[order], grid[order])), v))
    return label, pos, hi_total


@styled
def plot_nomogram(nomo, *, horizons=None, title: str = "", time_unit: str = "", patient: dict | None = None,
                  axis_labels: dict | None = None):
    """Draw ``nomo`` (:class:`gastrorad.models.nomogram.Nomogram`); ``time_unit`` labels the
    survival horizons (e.g. "months"). ``patient`` (axis name -> points) marks one patient's
    points in red on each axis it gives, and their total when it gives every axis. ``axis_labels`` (axis
    name -> label) names an axis for the reader (e.g. ``rad_venous`` -> "Deep signature (venous)")."""
    import matplotlib.pyplot as plt

    horizons = list(horizons or (nomo.baseline_survival.keys() if nomo.kind == "cox" else [None]))
    rows = 1 + len(nomo.axes) + 1 + len(horizons)
    fig, ax = plt.subplots(figsize=(7.0, 0.55 * rows + 0.6))
    ax.set_xlim(-35, 105)
    ax.set_ylim(rows - 0.5, -0.7)
    ax.axis("off")

    def ruler(y, positions, labels, name, scale=1.0):
        xs = [p * scale for p in positions]
        ax.plot([min(xs), max(xs)], [y, y], color="black", linewidth=0.8)
        last = -1e9
        for x, lab in sorted(zip(xs, labels)):
            ax.plot([x, x], [y, y - 0.12], color="black", linewidth=0.8)
            if x - last >= 5.5:  # keep labels readable: skip one that would overlap its neighbour
                ax.text(x, y - 0.18, lab, ha="center", va="bottom", fontsize=7)
                last = x
        ax.text(-33, y, name, ha="left", va="center", fontsize=8, fontweight="bold")

    ruler(0, list(range(0, 101, 10)), [str(v) for v in range(0, 101, 10)], "Points")
    for i, a in enumerate(nomo.axes, start=1):
        pts = (a.xbeta - a.xbeta.min()) * nomo.sc
        labels = [str(v) if a.categorical else f"{v:g}" for v in a.values]
        ruler(i, pts, labels, (axis_labels or {}).get(a.name, a.name))
    total_row = len(nomo.axes) + 1
    label, pos, hi_total = _outcome_axis(nomo, horizons[0], time_unit)
    top = max(10.0, math.ceil(hi_total / 20) * 20)
    scale = 100.0 / top
    ruler(total_row, [v * scale for v in range(0, int(top) + 1, 20)], [str(v) for v in range(0, int(top) + 1, 20)],
          "Total points")
    for j, h in enumerate(horizons):
        label, pos, _ = _outcome_axis(nomo, h, time_unit)
        if pos:
            ruler(total_row + 1 + j, [p * scale for p, _ in pos], [f"{v:g}" for _, v in pos], label)
    if patient:
        for i, a in enumerate(nomo.axes, start=1):
            if a.name in patient and patient[a.name] is not None:
                ax.plot([patient[a.name]], [i], "o", color="#c0392b", markersize=6, zorder=5)
                ax.plot([patient[a.name]] * 2, [0, i], color="#c0392b", linewidth=0.6, linestyle=":")
        if all(patient.get(a.name) is not None for a in nomo.axes):
            total = sum(patient[a.name] for a in nomo.axes)
            ax.plot([total * scale], [total_row], "o", color="#c0392b", markersize=6, zorder=5)
            ax.plot([total * scale] * 2, [total_row, total_row + len(horizons)], color="#c0392b", linewidth=0.8)
    ax.set_title(title)
    fig.tight_layout()
    return fig
