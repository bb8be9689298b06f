"""RECIST 1.1 response and TB-delta from lesion measurements (S3 baselines).

Per patient and time point: the sum of the longest diameters (SLD) of the target lesions
(short axis for lymph nodes is the caller's choice of measurement) and the summed area.

- RECIST 1.1 (Eisenhauer 2009), comparing a follow-up with baseline and with the nadir:
  CR = every target lesion gone (SLD 0); PD = SLD >= 20 % above the nadir *and* >= 5 mm
  above it, or a new lesion; PR = SLD >= 30 % below baseline; SD otherwise.
- TB-delta: percentage change of the summed target-lesion area from baseline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CATEGORIES = ("CR", "PR", "SD", "PD")


def recist_category(baseline_sld: float, nadir_sld: float, current_sld: float, *, new_lesion: bool = False) -> str:
    """RECIST 1.1 category of one follow-up (nadir = smallest SLD before this follow-up,
    baseline included)."""
    if new_lesion:
        return "PD"
    if current_sld >= 1.2 * nadir_sld and current_sld - nadir_sld >= 5.0:
        return "PD"
    if current_sld == 0:
        return "CR"
    if baseline_sld > 0 and current_sld <= 0.7 * baseline_sld:
        return "PR"
    return "SD"


def recist_table(lesions: pd.DataFrame, *, patient: str = "patient_id", timepoint: str = "timepoint",
                 lesion: str = "lesion_id", diameter: str = "diameter_mm", area: str | None = None) -> pd.DataFrame:
    """Per patient and follow-up: SLD, nadir, RECIST category and TB-delta (%).

    ``lesions`` has one row per lesion and time point; a lesion absent at baseline but
    present later is a new lesion (PD); a target lesion missing at a follow-up counts as 0.
    """
    rows = []
    for pid, g in lesions.groupby(patient, sort=True):
        base = g[g[timepoint] == g[timepoint].min()]
        targets = set(base[lesion])
        t0 = base[timepoint].iloc[0]
        sld = {t: float(gt[gt[lesion].isin(targets)][diameter].sum()) for t, gt in g.groupby(timepoint)}
        tb = ({t: float(gt[gt[lesion].isin(targets)][area].sum()) for t, gt in g.groupby(timepoint)}
              if area else None)
        nadir = sld[t0]
        for t in sorted(sld):
            if t == t0:
                continue
            new = bool(set(g[g[timepoint] == t][lesion]) - targets)
            cat = recist_category(sld[t0], nadir, sld[t], new_lesion=new)
            row = {patient: pid, timepoint: t, "sld_baseline": sld[t0], "nadir": nadir, "sld": sld[t],
                   "recist": cat, "new_lesion": new}
            if tb is not None:
                row["tb_delta_pct"] = 100 * (tb[t] - tb[t0]) / tb[t0] if tb[t0] > 0 else np.nan
            rows.append(row)
            nadir = min(nadir, sld[t])
    return pd.DataFrame(rows)
