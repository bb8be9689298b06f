"""Precision-recall curves with average precision and the prevalence baseline."""

from __future__ import annotations

import numpy as np

from gastrorad.figures.style import GREY, colour, new_figure, styled
from gastrorad.stats.precision_recall import precision_recall


@styled
def plot_precision_recall(y, models: dict[str, np.ndarray], *, title: str = ""):
    y = np.asarray(y).astype(int)
    fig, ax = new_figure()
    for i, (name, s) in enumerate(models.items()):
        curve, ap = precision_recall(y, s)
        ax.step(curve.recall, curve.precision, where="post", color=colour(i), label=f"{name}: AP {ap:.3f}")
    ax.axhline(y.mean(), color=GREY, linestyle=":", linewidth=0.8, label=f"prevalence {y.mean():.2f}")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="Recall (sensitivity)", ylabel="Precision (PPV)", title=title)
    ax.legend(loc="lower left")
    return fig
