"""``evaluate_study``: the evaluation stage of a run.

Writes ``<output>/metrics/``: ``metrics.json`` (every table below, the locked cut-offs, the
cohort sizes, the oracle), one CSV per table (``performance.csv``, ``classification.csv``,
``calibration.csv``, ...), and the figures under ``<output>/figures/``. The same numbers
feed the report, so the report, the JSON and the CSVs cannot disagree.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gastrorad.config.study import StudyConfig
from gastrorad.evaluation.frame import load_evaluation_frame, reference_model
from gastrorad.io.atomic import atomic_write_text
from gastrorad.stats.table1 import cohort_order


@dataclass
class EvaluationResult:
    metrics: dict
    tables: dict[str, pd.DataFrame]
    figures: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0


def records(df: pd.DataFrame) -> list[dict]:
    """JSON-safe records: NaN/inf -> None, numpy scalars -> Python."""
    out = []
    for rec in df.to_dict("records"):
        clean = {}
        for k, v in rec.items():
            if isinstance(v, np.generic):
                v = v.item()
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            clean[str(k)] = v
        out.append(clean)
    return out


def oracle_table(cfg: StudyConfig, ev, cohorts: list[str]) -> pd.DataFrame:
    """The best achievable AUC / C-index of each cohort: the planted true risk of a synthetic
    study (``data.truth``), on the same patients the models are evaluated on."""
    path = cfg.resolve(cfg.data.truth)
    if path is None or not path.exists():
        return pd.DataFrame()
    truth = pd.read_csv(path, dtype={"patient_id": str}).set_index("patient_id")["true_risk"]
    clin = ev.clinical.set_index("patient_id")
    rows = []
    for c in cohorts:
        ids = pd.unique(ev.long[ev.long.cohort == c].patient_id)  # every evaluated patient of the cohort
        ids = [i for i in ids if i in truth.index]
        if len(ids) < 4:
            continue
        r = truth.loc[ids].to_numpy(float)
        if cfg.outcome.kind == "binary":
            from gastrorad.stats.roc import auc_ci_delong
            y = clin.loc[ids, cfg.outcome.label].to_numpy().astype(int)
            if y.min() == y.max():
                continue
            a = auc_ci_delong(y, r)
            rows.append({"cohort": c, "n": len(ids), "oracle": a.auc, "lower": a.lower, "upper": a.upper})
        else:
            from gastrorad.stats.survival import harrell_c
            t, d = clin.loc[ids, cfg.outcome.time].to_numpy(float), clin.loc[ids, cfg.outcome.event].to_numpy(int)
            if d.sum() == 0:
                continue
            h = harrell_c(t, d, r)
            rows.append({"cohort": c, "n": len(ids), "oracle": h.c, "lower": h.lower, "upper": h.upper})
    return pd.DataFrame(rows)


def cohort_summary(cfg: StudyConfig, ev) -> pd.DataFrame:
    clin = ev.clinical
    rows = []
    for c in sorted(pd.unique(clin.cohort.dropna()), key=cohort_order):
        d = clin[clin.cohort == c]
        row = {"cohort": c, "patients": len(d), "centres": ", ".join(sorted(map(str, pd.unique(d.center))))
               if "center" in d else "", "scored": int(ev.long[ev.long.cohort == c].patient_id.nunique())}
        if cfg.outcome.kind == "binary":
            row["positive"] = int(pd.to_numeric(d[cfg.outcome.label], errors="coerce").sum())
        else:
            row["events"] = int(pd.to_numeric(d[cfg.outcome.event], errors="coerce").sum())
            row["median_follow_up"] = float(pd.to_numeric(d[cfg.outcome.time], errors="coerce").median())
        rows.append(row)
    return pd.DataFrame(rows)


def headline(perf: pd.DataFrame, oracle: pd.DataFrame) -> pd.DataFrame:
    """Cohort x model: AUC or C-index with CI, next to the oracle of the cohort."""
    if perf.empty:
        return pd.DataFrame()
    h = perf[["cohort", "model", "n", "auc_or_c", "lower", "upper", "p"]].copy()
    if not oracle.empty:
        h = h.merge(oracle[["cohort", "oracle"]], on="cohort", how="left")
    return h


def signature_comparison(cfg: StudyConfig, ev, cohorts: list[str]) -> pd.DataFrame:
    """Each deep signature against the handcrafted radiomics reference, per cohort: AUC with
    the DeLong paired test (``pROC::roc.test(method = "delong")``) or Harrell's C with the
    test of the C difference (binary / survival), on the patients both scored."""
    from gastrorad.evaluation.frame import is_handcrafted
    from gastrorad.stats.comparison import performance_table
    sigs = ev.signatures or []
    out = []
    for ref in [m for m in sigs if is_handcrafted(m)]:
        for m in [m for m in sigs if not is_handcrafted(m)]:
            d = ev.long[ev.long.model.isin([ref, m]) & ev.long.cohort.isin(cohorts)]
            d = d[d.groupby(["cohort", "patient_id"]).model.transform("nunique") == 2]
            if d.empty:
                continue
            o = cfg.outcome
            kw = ({"kind": "binary", "outcome": o.label, "probabilities": False} if ev.kind == "binary" else
                  {"kind": "survival", "time": o.time, "event": o.event})
            t = performance_table(d, reference=ref, **kw)
            if t.empty:
                continue
            a, b = t[t.model == ref].set_index("cohort"), t[t.model == m].set_index("cohort")
            for c in b.index:
                out.append({"cohort": c, "deep": m, "handcrafted": ref, "n": int(b.loc[c, "n"]),
                            "deep_value": float(b.loc[c, "auc_or_c"]),
                            "handcrafted_value": float(a.loc[c, "auc_or_c"]),
                            "difference": float(b.loc[c, "auc_or_c"] - a.loc[c, "auc_or_c"]),
                            "p": float(b.loc[c, "p"])})
    return pd.DataFrame(sorted(out, key=lambda r: (cohort_order(r["cohort"]), r["deep"], r["handcrafted"])))


def evaluate_study(cfg: StudyConfig, *, figures: bool = True) -> EvaluationResult:
    t0 = time.perf_counter()
    ev = load_evaluation_frame(cfg)
    cohorts = sorted(pd.unique(ev.long.cohort.dropna()), key=cohort_order)
    if ev.kind == "binary":
        from gastrorad.evaluation.binary import binary_figures, binary_tables
        tables = binary_tables(ev, cfg, cohorts)
    else:
        from gastrorad.evaluation.survival import survival_figures, survival_tables
        tables = survival_tables(ev, cfg, cohorts)
    if cfg.longitudinal is not None:
        from gastrorad.evaluation.longitudinal import attention_summary, reproducibility
        tables["reproducibility"] = reproducibility(cfg, ev, cohorts)
        tables["attention_sites"], tables["attention_time"] = attention_summary(cfg, ev)
    tables["oracle"] = oracle_table(cfg, ev, cohorts)
    tables["signature_comparison"] = signature_comparison(cfg, ev, cohorts)
    tables["cohorts"] = cohort_summary(cfg, ev)
    tables["headline"] = headline(tables["performance"], tables["oracle"])
    tables["cutoffs"] = pd.DataFrame([{"model": m, "cutoff": v, "rule": cfg.fusion.cutoff,
                                       "fitted_on": "training"} for m, v in ev.cutoffs.items()])
    out = cfg.output_dir / "metrics"
    for name, t in tables.items():
        atomic_write_text(out / f"{name}.csv", t.to_csv(index=False))
    figs = {}
    if figures:
        fig_dir = cfg.output_dir / "figures"
        figs = (binary_figures if ev.kind == "binary" else survival_figures)(ev, cfg, cohorts, fig_dir)
    if figures and cfg.longitudinal is not None and not tables["attention_sites"].empty:
        from gastrorad.figures import save_figure
        from gastrorad.figures.attention import plot_attention
        figs["attention"] = []
        for (model, setting), d in tables["attention_sites"].groupby(["model", "setting"]):
            t = tables["attention_time"]
            t = t[(t.model == model) & (t.setting == setting)]
            png = save_figure(plot_attention(d, t, title=f"{model.upper()} attention ({setting}), by risk group of "
                                                         f"{ev.primary}"),
                              cfg.output_dir / "figures" / f"attention_{model}_{setting}")[0]
            figs["attention"].append(str(png))
    metrics = {"study": cfg.name, "outcome": ev.kind, "models": ev.models, "primary_model": ev.primary,
               "reference_model": reference_model(cfg, ev.models),
               "signature_probabilities": ev.probability_source or {},
               "cohorts": cohorts, "cutoffs": ev.cutoffs,
               "figures": {k: [str(Path(p).relative_to(cfg.output_dir)) for p in v] for k, v in figs.items()},
               "tables": {name: records(t) for name, t in tables.items() if name != "decision_curve"
                          and name != "calibration_groups"}}
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=str))
    return EvaluationResult(metrics, tables, figs, time.perf_counter() - t0)
