"""S3 read-outs: reproducibility of the LDLM/TDLM C-index over training seeds (mean and SD,
as the paper's Table S9), and the attention weights over lesion sites and time points,
averaged within the primary model's risk groups (the paper's Fig. 6)."""

from __future__ import annotations

import pandas as pd

from gastrorad.stats.survival import harrell_c


def reproducibility(cfg, ev, cohorts: list[str]) -> pd.DataFrame:
    path = cfg.output_dir / "longitudinal_seeds.csv"
    if not path.exists():
        return pd.DataFrame()
    seeds = pd.read_csv(path, dtype={"patient_id": str})
    clin = ev.clinical.set_index("patient_id")
    o = cfg.outcome
    rows = []
    for (score, seed), d in seeds.dropna(subset=["value"]).groupby(["score", "seed"]):
        for c in cohorts:
            ids = [p for p in d.patient_id if clin.loc[p, "cohort"] == c] if len(d) else []
            if len(ids) < 4:
                continue
            dd = d.set_index("patient_id").loc[ids]
            t, e = clin.loc[ids, o.time].to_numpy(float), clin.loc[ids, o.event].to_numpy(int)
            if e.sum() == 0:
                continue
            rows.append({"score": score, "seed": int(seed), "cohort": c,
                         "c_index": harrell_c(t, e, dd.value.to_numpy(float)).c})
    per_seed = pd.DataFrame(rows)
    if per_seed.empty:
        return per_seed
    out = per_seed.groupby(["score", "cohort"]).c_index.agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"mean": "c_mean", "std": "c_sd", "count": "seeds"})


def attention_summary(cfg, ev) -> tuple[pd.DataFrame, pd.DataFrame]:
    path = cfg.output_dir / "attention.csv"
    if not path.exists():
        return pd.DataFrame(), pd.DataFrame()
    att = pd.read_csv(path, dtype={"patient_id": str})
    groups = ev.long[ev.long.model == ev.primary].set_index("patient_id").group
    att["risk_group"] = att.patient_id.map(groups)
    att = att.dropna(subset=["risk_group"])
    att = att[att.risk_group != ""]
    obj = att[att.level == "object"]
    sites = (obj.groupby(["model", "setting", "site", "risk_group"]).weight.agg(["mean", "count"]).reset_index()
             .rename(columns={"mean": "mean_weight", "count": "n"}))
    tim = att[att.level == "time"]
    times = (tim.groupby(["model", "setting", "timepoint", "risk_group"]).weight.agg(["mean", "count"]).reset_index()
             .rename(columns={"mean": "mean_weight", "count": "n"}))
    return sites, times
