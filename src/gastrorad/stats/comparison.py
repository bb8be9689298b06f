"""The seeds' performance tables: every model on every cohort, against a reference model.

Binary outcome, per cohort: AUC with DeLong CI, DeLong P against the reference (paired on
the same patients), and NRI / IDI against the reference when scores are probabilities.
Survival outcome, per cohort: Harrell's C with CI and the jackknife test of the
difference from the reference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gastrorad.stats.reclassification import nri_idi
from gastrorad.stats.roc import delong_compare
from gastrorad.stats.survival.concordance import compare_c


def performance_table(predictions: pd.DataFrame, *, reference: str, kind: str = "binary", outcome: str = "label",
                      time: str = "time", event: str = "event", score: str = "score", model: str = "model",
                      cohort: str = "cohort", patient: str = "patient_id", probabilities: bool = True,
                      level: float = 0.95) -> pd.DataFrame:
    """One row per cohort and model from long-format predictions
    (patient_id, cohort, model, score and the outcome columns)."""
    out = []
    cohorts = list(dict.fromkeys(predictions[cohort]))
    for c in cohorts:
        d = predictions[predictions[cohort] == c]
        wide = d.pivot_table(index=patient, columns=model, values=score, aggfunc="first")
        models = [m for m in dict.fromkeys(d[model]) if m in wide.columns]
        wide = wide.dropna()
        first = d.drop_duplicates(patient).set_index(patient).loc[wide.index]
        if kind == "binary":
            y = first[outcome].to_numpy().astype(int)
            if y.min() == y.max():
                continue
            t = delong_compare(y, {m: wide[m].to_numpy(float) for m in models}, reference=reference, level=level)
            t = t.rename(columns={"auc": "auc_or_c"})
            if probabilities:
                nri, idi = [], []
                for m in models:
                    if m == reference:
                        nri.append((np.nan,) * 4)
                        idi.append((np.nan,) * 4)
                        continue
                    r = nri_idi(y, wide[reference].to_numpy(float), wide[m].to_numpy(float), level=level).table
                    nri.append(tuple(r.loc["nri", ["estimate", "lower", "upper", "p"]]))
                    idi.append(tuple(r.loc["idi", ["estimate", "lower", "upper", "p"]]))
                t["nri"], t["nri_lower"], t["nri_upper"], t["nri_p"] = zip(*nri)
                t["idi"], t["idi_lower"], t["idi_upper"], t["idi_p"] = zip(*idi)
        else:
            t = compare_c(first[time].to_numpy(float), first[event].to_numpy(int),
                          {m: wide[m].to_numpy(float) for m in models}, reference=reference, level=level)
            t = t.rename(columns={"c": "auc_or_c"})
        t.insert(0, "cohort", c)
        t.insert(2, "n", len(wide))
        out.append(t)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()
