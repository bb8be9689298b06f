"""Risk groups from a locked cut-off: the hazard ratio of high vs low risk and the log-rank test.

The cut-off is fitted on the training cohort (e.g. Youden at a horizon, the median) and
applied unchanged to every cohort; a patient is high risk when ``score >= cutoff``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gastrorad.stats.survival._checks import check_survival
from gastrorad.stats.survival.cox import fit_cox
from gastrorad.stats.survival.logrank import logrank_test


@dataclass
class RiskGroups:
    cutoff: float
    group: np.ndarray  # "high" / "low"
    hr: float
    hr_lower: float
    hr_upper: float
    hr_p: float
    logrank_chisq: float
    logrank_p: float

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame([{k: v for k, v in self.__dict__.items() if k != "group"}])


def risk_groups(time, event, score, cutoff: float, *, level: float = 0.95) -> RiskGroups:
    """Split at the locked ``cutoff``; HR of high vs low (Cox, Efron) and the log-rank test."""
    time, event, (score,) = check_survival(time, event, score)
    high = (np.asarray(score, float) >= cutoff).astype(int)
    if high.min() == high.max():
        raise ValueError("all patients fall in one risk group at this cut-off")
    df = pd.DataFrame({"time": time, "event": event, "high": high})
    cox = fit_cox(df, "time", "event", ["high"], level=level).table.iloc[0]
    lr = logrank_test(time, event, np.where(high == 1, "high", "low"))
    return RiskGroups(float(cutoff), np.where(high == 1, "high", "low"), float(cox.hr), float(cox.hr_lower),
                      float(cox.hr_upper), float(cox.p), lr.statistic, lr.p_value)
