"""Time-dependent AUC over horizons for several risk scores."""

from __future__ import annotations

import numpy as np

from gastrorad.figures.style import GREY, colour, new_figure, styled
from gastrorad.stats.survival.time_auc import time_dependent_auc


@styled
def plot_time_auc(time, event, models: dict[str, np.ndarray], horizons, *, title: str = "",
                  time_label: str = "Time (months)"):
    fig, ax = new_figure(4.0, 3.0)
    for i, (name, r) in enumerate(models.items()):
        res = time_dependent_auc(time, event, r, horizons, se=False)
        ax.plot(res.horizon, res.auc, marker="o", markersize=3, color=colour(i), label=name)
    ax.axhline(0.5, color=GREY, linestyle=":", linewidth=0.8)
    ax.set(ylim=(0.4, 1.0), xlabel=time_label, ylabel="Time-dependent AUC", title=title)
    ax.legend(loc="lower right")
    return fig
