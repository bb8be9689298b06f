"""Forest plot of odds or hazard ratios with CIs on a log axis."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gastrorad.figures.style import GREY, styled


@styled
def plot_forest(table: pd.DataFrame, *, label: str = "covariate", estimate: str = "hr", lower: str = "hr_lower",
                upper: str = "hr_upper", p: str | None = "p", xlabel: str = "Hazard ratio (95% CI)", title: str = ""):
    """``table``: one row per term (e.g. :class:`~gastrorad.stats.survival.cox.CoxResult.table`)."""
    import matplotlib.pyplot as plt

    n = len(table)
    fig, ax = plt.subplots(figsize=(5.0, 0.35 * n + 1.0))
    yy = np.arange(n)[::-1]
    ax.errorbar(table[estimate], yy, xerr=[table[estimate] - table[lower], table[upper] - table[estimate]], fmt="s",
                color="black", markersize=4, capsize=0, linewidth=1)
    ax.axvline(1, color=GREY, linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yticks(yy, table[label])
    ax.set(xlabel=xlabel, title=title)
    for y_, (_, r) in zip(yy, table.iterrows()):
        txt = f"{r[estimate]:.2f} ({r[lower]:.2f}-{r[upper]:.2f})"
        if p and p in r:
            txt += f"  P {r[p]:.3f}" if r[p] >= 0.001 else "  P<0.001"
        ax.text(1.02, y_, txt, transform=ax.get_yaxis_transform(), va="center", fontsize=7)
    fig.tight_layout()
    return fig
