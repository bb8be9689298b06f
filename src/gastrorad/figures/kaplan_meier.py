"""Kaplan-Meier curves by group with CI bands, the number at risk under the plot, the
log-rank P and (two groups) the hazard ratio."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gastrorad.figures.style import colour, styled
from gastrorad.stats.survival.kaplan_meier import kaplan_meier
from gastrorad.stats.survival.logrank import logrank_test


@styled
def plot_kaplan_meier(time, event, group, *, hr: tuple[float, float, float] | None = None, title: str = "",
                      time_label: str = "Time (months)", risk_times=None):
    """``hr`` = (HR, lower, upper) to annotate, e.g. from :func:`gastrorad.stats.survival.risk_groups`."""
    import matplotlib.pyplot as plt

    time, event, group = np.asarray(time, float), np.asarray(event).astype(int), np.asarray(group)
    levels = sorted(pd.unique(group), key=str)
    fig, (ax, tab) = plt.subplots(2, 1, figsize=(4.2, 4.0), gridspec_kw={"height_ratios": [4, 1]}, sharex=True)
    risk_times = np.linspace(0, time.max(), 6) if risk_times is None else np.asarray(risk_times, float)
    for i, g in enumerate(levels):
        m = group == g
        km = kaplan_meier(time[m], event[m])
        t = np.concatenate([[0], km.table.time])
        s = np.concatenate([[1], km.table.surv])
        lo = np.concatenate([[1], km.table.lower.fillna(0)])
        hi = np.concatenate([[1], km.table.upper.fillna(0)])
        ax.step(t, s, where="post", color=colour(i), label=f"{g} (n={m.sum()})")
        ax.fill_between(t, lo, hi, step="post", color=colour(i), alpha=0.12, linewidth=0)
        cens = km.table[km.table.n_censor > 0]
        ax.plot(cens.time, km.survival_at(cens.time), "|", color=colour(i), markersize=5)
        tab.text(-0.02, i, str(g), transform=tab.get_yaxis_transform(), ha="right", va="center", color=colour(i),
                 fontsize=7)
        for tt, n in zip(risk_times, km.at_risk(risk_times)):
            tab.text(tt, i, str(int(n)), ha="center", va="center", fontsize=7)
    note = ""
    if len(levels) >= 2:
        lr = logrank_test(time, event, group)
        note = f"log-rank P = {lr.p_value:.3g}" if lr.p_value >= 0.001 else "log-rank P < 0.001"
    if hr is not None:
        note += f"\nHR {hr[0]:.2f} ({hr[1]:.2f}-{hr[2]:.2f})"
    ax.text(0.98, 0.95, note, transform=ax.transAxes, ha="right", va="top", fontsize=8)
    ax.set(ylim=(0, 1.02), ylabel="Survival probability", title=title)
    ax.legend(loc="lower left")
    tab.set(ylim=(len(levels) - 0.5, -0.5), yticks=[], xlabel=time_label)
    tab.spines["left"].set_visible(False)
    tab.set_title("Number at risk", fontsize=7, loc="left")
    fig.tight_layout()
    return fig
