"""Statistics that match the R packages of the field (pROC, Hmisc, rms, survival).

Binary outcomes: :mod:`.roc` (ROC, AUC, DeLong), :mod:`.bootstrap`, :mod:`.cutoff`
(Youden, accuracy/sensitivity/specificity/PPV/NPV), :mod:`.precision_recall`,
:mod:`.reclassification` (NRI, IDI), :mod:`.calibration` (val.prob, Hosmer-Lemeshow),
:mod:`.decision_curve`. Survival outcomes: :mod:`.survival`. Across models and cohorts:
:mod:`.comparison` (performance tables), :mod:`.validation` (optimism-corrected bootstrap,
as rms::validate), :mod:`.table1`. Each function's docstring names the R function it mirrors;
``tests/r_reference/`` holds the R scripts and the values they produced.
"""

from gastrorad.stats.bootstrap import BootstrapCI, auc_ci_bootstrap, bootstrap_auc_replicates, bootstrap_ci
from gastrorad.stats.comparison import performance_table
from gastrorad.stats.calibration import calibration_curve, calibration_statistics, hosmer_lemeshow
from gastrorad.stats.cutoff import classification_metrics, clopper_pearson, confusion_matrix, youden_cutoff
from gastrorad.stats.decision_curve import decision_curve, net_benefit
from gastrorad.stats.precision_recall import precision_recall
from gastrorad.stats.reclassification import nri_idi
from gastrorad.stats.roc import auc, auc_ci_delong, delong_compare, delong_covariance, delong_test, roc_curve
from gastrorad.stats.table1 import table_one, table_one_by_cohort, table_one_html
from gastrorad.stats.validation import bootstrap_validate

__all__ = [
    "BootstrapCI", "auc", "auc_ci_bootstrap", "auc_ci_delong", "bootstrap_auc_replicates", "bootstrap_ci",
    "calibration_curve", "calibration_statistics", "classification_metrics", "clopper_pearson", "confusion_matrix",
    "decision_curve", "delong_compare", "delong_covariance", "delong_test", "hosmer_lemeshow", "net_benefit", "nri_idi",
    "performance_table", "precision_recall", "roc_curve", "table_one", "table_one_by_cohort", "table_one_html", "youden_cutoff",
    "bootstrap_validate",
]
