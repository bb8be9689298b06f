"""Publication figures (matplotlib), one consistent style; each saved as PNG and SVG.

One file per figure kind: :mod:`.roc`, :mod:`.precision_recall`, :mod:`.calibration`,
:mod:`.decision_curve`, :mod:`.kaplan_meier`, :mod:`.time_auc`, :mod:`.forest`, :mod:`.nomogram`,
:mod:`.centre_effects`.
"""

from gastrorad.figures.calibration import plot_calibration
from gastrorad.figures.centre_effects import plot_centre_effects
from gastrorad.figures.decision_curve import plot_decision_curve
from gastrorad.figures.forest import plot_forest
from gastrorad.figures.kaplan_meier import plot_kaplan_meier
from gastrorad.figures.nomogram import plot_nomogram
from gastrorad.figures.precision_recall import plot_precision_recall
from gastrorad.figures.roc import plot_roc
from gastrorad.figures.style import PALETTE, save_figure
from gastrorad.figures.time_auc import plot_time_auc

__all__ = ["PALETTE", "plot_calibration", "plot_centre_effects", "plot_decision_curve", "plot_forest",
           "plot_kaplan_meier", "plot_nomogram", "plot_precision_recall", "plot_roc", "plot_time_auc", "save_figure"]
