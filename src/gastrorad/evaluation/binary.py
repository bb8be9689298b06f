"""Binary outcome, per cohort: AUC (DeLong CI) and DeLong P against the reference model,
NRI/IDI (Hmisc::improveProb), accuracy/sensitivity/specificity/PPV/NPV at the cut-off
locked on training (pROC::coords), confusion matrices, calibration (rms::val.prob) with
Hosmer-Lemeshow, precision-recall, net benefit, subgroup AUCs and, when the study has a
survival horizon too (S2's OS), Kaplan-Meier by the locked risk groups.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gastrorad.evaluation.frame import EvaluationFrame, reference_model, wide_scores
from gastrorad.stats import (calibration_statistics, classification_metrics, confusion_matrix, decision_curve,
                             hosmer_lemeshow, performance_table, precision_recall)
from gastrorad.stats.roc import auc_ci_delong


def _two_classes(y: np.ndarray) -> bool:
    return len(y) >= 4 and y.min() != y.max()


def binary_tables(ev: EvaluationFrame, cfg, cohorts: list[str]) -> dict[str, pd.DataFrame]:
    e = cfg.evaluation
    label = cfg.outcome.label
    long = ev.long
    ref = reference_model(cfg, ev.models)
    perf, cls, cal, conf, pr, dca, sub = [], [], [], [], [], [], []
    for c in cohorts:
        wide = wide_scores(long, c, ev.models, "prob")
        y = long[long.cohort == c].drop_duplicates("patient_id").set_index("patient_id").loc[wide.index, label]
        y = y.to_numpy().astype(int)
        if not _two_classes(y):
            continue
        lp = wide.reset_index().melt(id_vars="patient_id", var_name="model", value_name="score")
        lp["label"] = lp.patient_id.map(dict(zip(wide.index, y)))
        lp["cohort"] = c
        t = performance_table(lp, reference=ref, kind="binary", outcome="label", level=0.95)
        if e.nri_categories:  # categorical NRI replaces the category-free one
            from gastrorad.stats import nri_idi
            for i, row in t.iterrows():
                if row.model != ref:
                    r = nri_idi(y, wide[ref].to_numpy(float), wide[row.model].to_numpy(float),
                                categories=e.nri_categories).table
                    cols = ["nri", "nri_lower", "nri_upper", "nri_p"]
                    t.loc[i, cols] = r.loc["nri", ["estimate", "lower", "upper", "p"]].to_numpy()
        perf.append(t)
        for m in wide.columns:
            p = wide[m].to_numpy(float)
            score = long[(long.cohort == c) & (long.model == m)].set_index("patient_id").loc[wide.index, "score"]
            cut = ev.cutoffs[m]
            met = classification_metrics(y, score.to_numpy(float), cut).table
            cls.append(met.assign(cohort=c, model=m, cutoff=cut))
            cm = confusion_matrix(y, score.to_numpy(float), cut).to_numpy()
            conf.append({"cohort": c, "model": m, "cutoff": cut, "tn": int(cm[0, 0]), "fp": int(cm[0, 1]),
                         "fn": int(cm[1, 0]), "tp": int(cm[1, 1])})
            row = {"cohort": c, "model": m, "brier": float(np.mean((p - y) ** 2))}
            try:
                st = calibration_statistics(y, np.clip(p, 1e-12, 1 - 1e-12))
                row.update(intercept=st.intercept, slope=st.slope, spiegelhalter_z=st.spiegelhalter_z,
                           spiegelhalter_p=st.spiegelhalter_p, emax=st.emax, eavg=st.eavg)
            except (np.linalg.LinAlgError, ValueError) as exc:  # e.g. separation in a small cohort
                row["note"] = f"calibration slope not estimable: {exc}"
            try:
                hl = hosmer_lemeshow(y, p, g=e.calibration_groups)
                row.update(hl_chisq=hl.statistic, hl_df=hl.df, hl_p=hl.p_value)
            except ValueError as exc:
                row["note"] = str(exc)
            cal.append(row)
            _, ap = precision_recall(y, p)
            pr.append({"cohort": c, "model": m, "average_precision": ap, "prevalence": float(y.mean())})
        d = decision_curve(y, {m: wide[m].to_numpy(float) for m in wide.columns})
        dca.append(d.assign(cohort=c))
        for var in e.subgroups:
            levels = ev.clinical.set_index("patient_id").loc[wide.index, var]
            for lv in sorted(pd.unique(levels.dropna()), key=str):
                mask = (levels == lv).to_numpy()
                if not _two_classes(y[mask]):
                    continue
                for m in wide.columns:
                    a = auc_ci_delong(y[mask], wide[m].to_numpy(float)[mask])
                    sub.append({"cohort": c, "subgroup": var, "level": lv, "model": m, "n": int(mask.sum()),
                                "auc": a.auc, "lower": a.lower, "upper": a.upper})
    out = {"performance": pd.concat(perf, ignore_index=True) if perf else pd.DataFrame(),
           "classification": pd.concat(cls, ignore_index=True) if cls else pd.DataFrame(),
           "confusion": pd.DataFrame(conf), "calibration": pd.DataFrame(cal), "precision_recall": pd.DataFrame(pr),
           "decision_curve": pd.concat(dca, ignore_index=True) if dca else pd.DataFrame(),
           "subgroups": pd.DataFrame(sub)}
    if cfg.outcome.extra_survival:
        out["risk_groups"] = extra_survival_groups(ev, cfg, cohorts)
    return out


def extra_survival_groups(ev: EvaluationFrame, cfg, cohorts: list[str]) -> pd.DataFrame:
    """HR (high vs low) and log-rank of each extra survival outcome (S2: OS) in the primary
    model's risk groups at its locked cut-off."""
    from gastrorad.stats.survival import risk_groups
    rows = []
    clin = ev.clinical.set_index("patient_id")
    for extra in cfg.outcome.extra_survival:
        for c in cohorts:
            d = ev.long[(ev.long.cohort == c) & (ev.long.model == ev.primary)].set_index("patient_id")
            t = clin.loc[d.index, extra.time].to_numpy(float)
            ev_ = clin.loc[d.index, extra.event].to_numpy(float)
            ok = np.isfinite(t) & np.isfinite(ev_)
            try:
                rg = risk_groups(t[ok], ev_[ok].astype(int), d.score.to_numpy(float)[ok], ev.cutoffs[ev.primary])
            except ValueError:
                continue
            rows.append({"outcome": extra.name, "cohort": c, "model": ev.primary, "n": int(ok.sum()),
                         "events": int(ev_[ok].sum()), **rg.summary().iloc[0].to_dict()})
    return pd.DataFrame(rows)


def binary_figures(ev: EvaluationFrame, cfg, cohorts: list[str], fig_dir) -> dict[str, list[str]]:
    """ROC (bootstrap bands, readers' points), PR, calibration and decision curves per cohort;
    Kaplan-Meier of extra survival outcomes by risk group. Returns kind -> PNG paths."""
    from gastrorad.figures import (plot_calibration, plot_decision_curve, plot_kaplan_meier, plot_precision_recall,
                                   plot_roc, save_figure)
    e = cfg.evaluation
    readers = {k: (v["sensitivity"], v["specificity"]) for k, v in cfg.report.readers.items()}
    figs: dict[str, list[str]] = {"roc": [], "pr": [], "calibration": [], "decision_curve": [], "km": []}
    clin = ev.clinical.set_index("patient_id")
    for c in cohorts:
        wide = wide_scores(ev.long, c, ev.models, "prob")
        y = clin.loc[wide.index, cfg.outcome.label].to_numpy().astype(int)
        if not _two_classes(y):
            continue
        models = {m: wide[m].to_numpy(float) for m in wide.columns}
        figs["roc"].append(str(save_figure(plot_roc(y, models, n_boot=e.bootstrap, seed=cfg.seed, title=c,
                                                    readers=readers or None), fig_dir / f"roc_{c}")[0]))
        figs["pr"].append(str(save_figure(plot_precision_recall(y, models, title=c), fig_dir / f"pr_{c}")[0]))
        varying = {m: v for m, v in models.items() if np.unique(v).size > 1}  # a constant score has no curve
        if varying:
            figs["calibration"].append(str(save_figure(plot_calibration(y, varying, bins=e.calibration_groups,
                                                                        title=c), fig_dir / f"calibration_{c}")[0]))
        figs["decision_curve"].append(str(save_figure(plot_decision_curve(y, models, title=c),
                                                      fig_dir / f"dca_{c}")[0]))
        for extra in cfg.outcome.extra_survival:
            d = ev.long[(ev.long.cohort == c) & (ev.long.model == ev.primary)].set_index("patient_id")
            t, ev_ = clin.loc[d.index, extra.time].to_numpy(float), clin.loc[d.index, extra.event].to_numpy(float)
            ok = np.isfinite(t) & np.isfinite(ev_)
            if len(set(d.group[ok])) < 2:
                continue
            figs["km"].append(str(save_figure(plot_kaplan_meier(
                t[ok], ev_[ok].astype(int), d.group.to_numpy()[ok], title=f"{extra.name}: {ev.primary}, {c}",
                time_label=f"Time ({cfg.outcome.time_unit})"), fig_dir / f"km_{extra.name}_{c}")[0]))
    return figs
