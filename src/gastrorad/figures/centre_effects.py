"""Centre effects before and after harmonisation: the first two principal components of a
feature table (standardised features), one point per patient, coloured by centre."""

from __future__ import annotations

import pandas as pd

from gastrorad.figures.style import colour, styled


@styled
def plot_centre_effects(pcs: pd.DataFrame, shares: dict | None = None, *, title: str = ""):
    """``pcs``: columns stage ("before"/"after"), centre, pc1, pc2 (as
    :func:`gastrorad.models.harmonize.centre_effects` returns them); one panel per stage.
    ``shares``: stage -> {"significant", "tested"} (the Kruskal-Wallis / FDR count), put in the
    panel titles."""
    import matplotlib.pyplot as plt

    stages = [s for s in ("before", "after") if s in set(pcs.stage)]
    fig, axes = plt.subplots(1, len(stages), figsize=(3.3 * len(stages), 3.3), squeeze=False)
    centres = sorted(pcs.centre.astype(str).unique())
    for ax, stage in zip(axes[0], stages):
        d = pcs[pcs.stage == stage]
        for i, c in enumerate(centres):
            pts = d[d.centre.astype(str) == c]
            ax.scatter(pts.pc1, pts.pc2, s=12, alpha=0.75, color=colour(i), label=f"{c} (n={len(pts)})",
                       linewidths=0)
        head = "Before harmonisation" if stage == "before" else "After harmonisation"
        s = (shares or {}).get(stage)
        if s and s.get("tested"):
            head += f"\n{s['significant']}/{s['tested']} features differ by centre"
        ax.set(xlabel="PC1", ylabel="PC2", title=head)
    axes[0][-1].legend(title="Centre", loc="best", fontsize=7, title_fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
