"""Calibration plot: binned observed vs predicted with exact CIs, the lowess curve, and
intercept, slope, Brier and the Hosmer-Lemeshow test in the corner."""

from __future__ import annotations

import numpy as np

from gastrorad.figures.style import GREY, colour, new_figure, styled
from gastrorad.stats.calibration import calibration_curve, calibration_statistics, hosmer_lemeshow


@styled
def plot_calibration(y, models: dict[str, np.ndarray], *, bins: int = 10, title: str = ""):
    fig, ax = new_figure()
    notes = []
    for i, (name, p) in enumerate(models.items()):
        cc = calibration_curve(y, p, bins=bins)
        b, sm = cc["binned"], cc["smoothed"]
        ax.errorbar(b.predicted, b.observed, yerr=[b.observed - b.lower, b.upper - b.observed], fmt="o",
                    color=colour(i), markersize=3, linewidth=0.8, capsize=0)
        ax.plot(sm.predicted, sm.observed, color=colour(i), label=name)
        try:
            hl_p = f"{hosmer_lemeshow(y, p, g=bins).p_value:.2f}"
        except ValueError:
            hl_p = "n/a"
        try:
            st = calibration_statistics(y, np.clip(p, 1e-12, 1 - 1e-12))
            notes.append(f"{name}: int {st.intercept:.2f}, slope {st.slope:.2f}, Brier {st.brier:.3f}, HL P {hl_p}")
        except (np.linalg.LinAlgError, ValueError):  # separation: no slope to show
            notes.append(f"{name}: slope not estimable, Brier {np.mean((p - y) ** 2):.3f}, HL P {hl_p}")
    ax.plot([0, 1], [0, 1], color=GREY, linestyle=":", linewidth=0.8, label="ideal")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="Predicted probability", ylabel="Observed proportion", title=title)
    ax.set_aspect("equal")
    ax.legend(loc="upper left")
    ax.annotate("\n".join(notes), xy=(0, -0.2), xycoords="axes fraction", ha="left", va="top", fontsize=6)
    return fig
