"""ROC curves of several models with bootstrap confidence bands of sensitivity
(as ``pROC::ci.se`` over a grid of specificities) and the AUC with its DeLong CI in the legend."""

from __future__ import annotations

import numpy as np

from gastrorad.figures.style import GREY, colour, new_figure, styled
from gastrorad.stats.bootstrap import stratified_indices
from gastrorad.stats.roc import auc_ci_delong, roc_curve


def _sens_at(y, s, spec_grid):
    c = roc_curve(y, s)
    order = np.argsort(c.specificity, kind="stable")
    return np.interp(spec_grid, c.specificity[order], c.sensitivity[order])


@styled
def plot_roc(y, models: dict[str, np.ndarray], *, n_boot: int = 200, seed: int = 0, title: str = "",
             readers: dict[str, tuple[float, float]] | None = None):
    """ROC of each model; ``readers`` (name -> (sensitivity, specificity)) are drawn as points,
    as S4 shows clinicians on the ROC. Returns the figure."""
    y = np.asarray(y).astype(int)
    fig, ax = new_figure()
    grid = np.linspace(0, 1, 101)
    idx = stratified_indices(y, n_boot, np.random.default_rng(seed)) if n_boot else None
    for i, (name, s) in enumerate(models.items()):
        s = np.asarray(s, float)
        c = roc_curve(y, s)
        a = auc_ci_delong(y, s)
        if idx is not None:
            band = np.stack([_sens_at(y[r], s[r], grid) for r in idx])
            lo, hi = np.quantile(band, [0.025, 0.975], axis=0)
            ax.fill_between(1 - grid, lo, hi, color=colour(i), alpha=0.15, linewidth=0)
        ax.step(1 - c.specificity, c.sensitivity, where="post", color=colour(i),
                label=f"{name}: AUC {a.auc:.3f} ({a.lower:.3f}-{a.upper:.3f})")
    for j, (name, (se, sp)) in enumerate((readers or {}).items()):
        ax.plot(1 - sp, se, marker="os^D"[j % 4], color="black", linestyle="none", markersize=5, label=name)
    ax.plot([0, 1], [0, 1], color=GREY, linestyle=":", linewidth=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity", ylabel="Sensitivity", title=title)
    ax.set_aspect("equal")
    ax.legend(loc="lower right")
    return fig
