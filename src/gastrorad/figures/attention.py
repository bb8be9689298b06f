"""Attention read-outs of S3's models (as the paper's Fig. 6): mean attention weight over
lesion sites (OH-former) and over time points (TH-former), by risk group."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gastrorad.figures.style import colour, styled


@styled
def plot_attention(sites: pd.DataFrame, times: pd.DataFrame, *, title: str = ""):
    """``sites``: site, risk_group, mean_weight; ``times``: timepoint, risk_group, mean_weight."""
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(7.0, 2.8))
    for ax, table, key, label in ((a1, sites, "site", "Lesion site"), (a2, times, "timepoint", "Time point")):
        levels = sorted(pd.unique(table[key]), key=str)
        groups = [g for g in ("high", "low") if g in set(table.risk_group)]
        width = 0.8 / max(len(groups), 1)
        for j, g in enumerate(groups):
            d = table[table.risk_group == g].set_index(key).mean_weight
            ax.bar(np.arange(len(levels)) + j * width, [d.get(lv, 0.0) for lv in levels], width,
                   color=colour(j), label=f"{g} risk")
        names = [("BL" if lv == 0 else f"{lv}F") if key == "timepoint" else str(lv) for lv in levels]
        ax.set_xticks(np.arange(len(levels)) + width * (len(groups) - 1) / 2, names, rotation=30 if
                      key == "site" else 0)
        ax.set(xlabel=label, ylabel="Mean attention weight")
        ax.legend()
    fig.suptitle(title, fontsize=9)
    return fig
