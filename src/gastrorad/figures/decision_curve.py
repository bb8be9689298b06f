"""Decision curves: net benefit of each model against treat-all and treat-none."""

from __future__ import annotations

import numpy as np

from gastrorad.figures.style import GREY, colour, new_figure, styled
from gastrorad.stats.decision_curve import decision_curve


@styled
def plot_decision_curve(y, models: dict[str, np.ndarray], *, thresholds=None, n_boot: int = 0, seed: int = 0,
                        title: str = ""):
    dc = decision_curve(y, models, thresholds, n_boot=n_boot, seed=seed)
    fig, ax = new_figure(4.2, 3.2)
    for i, name in enumerate(models):
        d = dc[dc.model == name]
        ax.plot(d.threshold, d.net_benefit, color=colour(i), label=name)
        if "lower" in d and d["lower"].notna().any():
            ax.fill_between(d.threshold, d.lower, d.upper, color=colour(i), alpha=0.15, linewidth=0)
    allc = dc[dc.model == "treat_all"]
    ax.plot(allc.threshold, allc.net_benefit, color=GREY, linewidth=1.0, label="Treat all")
    ax.axhline(0, color="black", linewidth=0.8, label="Treat none")
    top = dc[dc.model != "treat_all"].net_benefit.max()
    ax.set(ylim=(min(-0.05, -0.1 * top), max(top * 1.15, 0.05)), xlim=(dc.threshold.min(), dc.threshold.max()),
           xlabel="Threshold probability", ylabel="Net benefit", title=title)
    ax.legend(loc="upper right")
    return fig
