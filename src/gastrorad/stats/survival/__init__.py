"""Survival statistics matching R's ``survival`` package.

:mod:`.kaplan_meier` (survfit, by group, at chosen times), :mod:`.logrank` (survdiff),
:mod:`.cox` (coxph with Efron or Breslow ties, basehaz / survfit.coxph predictions, cox.zph), :mod:`.concordance` (Harrell's C with its SE, Uno's C),
:mod:`.time_auc` (cumulative/dynamic time-dependent AUC with IPCW, SE and CI, as timeROC),
:mod:`.risk_groups` (locked cut-offs, HR and log-rank between groups), :mod:`.calibration`
(t-year calibration, survival decision curves).
"""

from gastrorad.stats.survival.calibration import observed_expected, survival_calibration, survival_net_benefit
from gastrorad.stats.survival.concordance import compare_c, harrell_c, uno_c
from gastrorad.stats.survival.cox import cox_baseline_hazard, cox_zph, fit_cox
from gastrorad.stats.survival.kaplan_meier import kaplan_meier, kaplan_meier_by_group
from gastrorad.stats.survival.logrank import logrank_test
from gastrorad.stats.survival.risk_groups import risk_groups
from gastrorad.stats.survival.time_auc import time_dependent_auc

__all__ = ["compare_c", "cox_baseline_hazard", "cox_zph", "fit_cox", "harrell_c", "kaplan_meier",
           "kaplan_meier_by_group", "logrank_test", "observed_expected", "risk_groups", "survival_calibration",
           "survival_net_benefit", "time_dependent_auc", "uno_c"]
