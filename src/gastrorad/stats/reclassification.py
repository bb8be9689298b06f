"""Net reclassification improvement and integrated discrimination improvement.

Mirrors ``Hmisc::improveProb(x1 = old, x2 = new, y)``: category-free NRI (any upward or
downward move of the predicted probability counts), IDI, each with SE, z and two-sided
P. With ``categories`` (risk cut-points, e.g. [0.2, 0.4]) probabilities are first cut
into risk classes and only moves between classes count: the categorical NRI, which is
``improveProb`` applied to the class indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from gastrorad.stats._checks import check_binary


@dataclass
class Reclassification:
    table: pd.DataFrame  # rows: nri_events, nri_nonevents, nri, idi; columns estimate, se, z, p, lower, upper

    def summary(self) -> pd.DataFrame:
        return self.table


def _row(name, est, se, level):
    z = est / se if se > 0 else np.nan
    zq = stats.norm.ppf(1 - (1 - level) / 2)
    return {"statistic": name, "estimate": est, "se": se, "z": z,
            "p": float(2 * stats.norm.sf(abs(z))) if np.isfinite(z) else np.nan,
            "lower": est - zq * se, "upper": est + zq * se}


def nri_idi(y, p_old, p_new, *, categories=None, level: float = 0.95) -> Reclassification:
    """NRI (category-free, or categorical with ``categories``) and IDI of ``p_new`` over ``p_old``."""
    y, (p_old, p_new) = check_binary(y, p_old, p_new)
    ev, ne = y == 1, y == 0
    n1, n0 = ev.sum(), ne.sum()
    if categories is not None:
        cuts = np.sort(np.asarray(categories, dtype=float))
        c_old, c_new = np.searchsorted(cuts, p_old, side="right"), np.searchsorted(cuts, p_new, side="right")
        d_move = (c_new - c_old).astype(float)
    else:
        d_move = p_new - p_old
    up_ev, down_ev = np.sum(d_move[ev] > 0), np.sum(d_move[ev] < 0)
    up_ne, down_ne = np.sum(d_move[ne] > 0), np.sum(d_move[ne] < 0)
    nri_ev = (up_ev - down_ev) / n1
    nri_ne = (down_ne - up_ne) / n0
    v_ev = (up_ev + down_ev) / n1 ** 2 - (up_ev - down_ev) ** 2 / n1 ** 3
    v_ne = (down_ne + up_ne) / n0 ** 2 - (down_ne - up_ne) ** 2 / n0 ** 3
    d = p_new - p_old
    idi = d[ev].mean() - d[ne].mean()
    se_idi = np.sqrt(np.var(d[ev], ddof=1) / n1 + np.var(d[ne], ddof=1) / n0)
    rows = [_row("nri_events", nri_ev, np.sqrt(v_ev), level), _row("nri_nonevents", nri_ne, np.sqrt(v_ne), level),
            _row("nri", nri_ev + nri_ne, np.sqrt(v_ev + v_ne), level), _row("idi", idi, se_idi, level)]
    return Reclassification(pd.DataFrame(rows).set_index("statistic"))
