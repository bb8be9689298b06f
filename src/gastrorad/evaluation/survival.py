"""Survival outcome, per cohort: Harrell's C with CI and its difference from the reference
(survival::concordance), HR of high vs low risk at the cut-off locked on training with the
log-rank test, time-dependent AUC at the horizons (IPCW, as timeROC, with its SE), t-year calibration
(observed Kaplan-Meier vs predicted survival, with a Hosmer-Lemeshow test on the t-year
status as S3 reports it) and survival net benefit (as dcurves) for Cox fusion models.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from gastrorad.evaluation.frame import EvaluationFrame, reference_model, wide_scores
from gastrorad.models.pipeline import evaluation_horizons
from gastrorad.stats import hosmer_lemeshow, performance_table
from gastrorad.stats.resample import map_replicates
from gastrorad.stats.survival import (observed_expected, risk_groups, survival_calibration, survival_net_benefit,
                                      time_dependent_auc)


def predicted_survival(cfg, model: str, lp: np.ndarray, horizon: float) -> np.ndarray | None:
    """S(t | x) = S0(t) ^ exp(lp) of a fitted Cox fusion model (None for other models)."""
    fit = json.loads((cfg.output_dir / "models" / "fit.json").read_text(encoding="utf-8"))
    spec = fit.get("models", {}).get(model)
    if not spec or spec["kind"] != "cox" or str(float(horizon)) not in spec.get("baseline_survival", {}):
        return None
    return spec["baseline_survival"][str(float(horizon))] ** np.exp(np.asarray(lp, float))


def _time_auc_replicate(t, d, s, horizons):
    def one(i: np.ndarray):
        if d[i].sum() == 0:
            return None
        return time_dependent_auc(t[i], d[i], s[i], horizons, se=False).auc.to_numpy(float)
    return one


def _time_auc_ci(t, d, s, horizons, n_boot: int, seed: int, n_jobs: int = 1) -> pd.DataFrame:
    """AUC(t) at each horizon with timeROC's SE and 95% CI (i.i.d. representation); with
    ``n_boot`` the CI is a percentile bootstrap (patients resampled) instead, on ``n_jobs``
    processes when it is slow enough (the resamples are drawn first: the serial result)."""
    res = time_dependent_auc(t, d, s, horizons)
    if n_boot:
        rows = np.random.default_rng(seed).integers(0, len(t), (n_boot, len(t)))
        reps = [r for r in map_replicates(_time_auc_replicate(t, d, s, horizons), rows, n_jobs=n_jobs)
                if r is not None]
        if reps:
            reps = np.array(reps)
            with np.errstate(all="ignore"):
                res["lower"] = np.nanquantile(reps, 0.025, axis=0)
                res["upper"] = np.nanquantile(reps, 0.975, axis=0)
    return res


def _cohort_outcome(ev: EvaluationFrame, cfg, cohort: str):
    """(scores of the cohort's patients x models, time, event), or None when the cohort has
    fewer than 4 scored patients or no event."""
    wide = wide_scores(ev.long, cohort, ev.models)
    if len(wide) < 4:
        return None
    clin = ev.clinical.set_index("patient_id")
    t = clin.loc[wide.index, cfg.outcome.time].to_numpy(float)
    d = clin.loc[wide.index, cfg.outcome.event].to_numpy(int)
    return None if d.sum() == 0 else (wide, t, d)


def survival_tables(ev: EvaluationFrame, cfg, cohorts: list[str]) -> dict[str, pd.DataFrame]:
    e = cfg.evaluation
    ref = reference_model(cfg, ev.models)
    horizons = evaluation_horizons(cfg)
    perf, groups, tauc, cal, hl, dca = [], [], [], [], [], []
    for c in cohorts:
        got = _cohort_outcome(ev, cfg, c)
        if got is None:
            continue
        wide, t, d = got
        lp = wide.reset_index().melt(id_vars="patient_id", var_name="model", value_name="score")
        lp["time"], lp["event"] = lp.patient_id.map(dict(zip(wide.index, t))), lp.patient_id.map(dict(zip(wide.index, d)))
        lp["cohort"] = c
        perf.append(performance_table(lp, reference=ref, kind="survival"))
        for m in wide.columns:
            s = wide[m].to_numpy(float)
            try:
                rg = risk_groups(t, d, s, ev.cutoffs[m])
                groups.append({"cohort": c, "model": m, "n": len(t), "events": int(d.sum()),
                               "n_high": int((rg.group == "high").sum()), **rg.summary().iloc[0].to_dict()})
            except ValueError:
                groups.append({"cohort": c, "model": m, "n": len(t), "events": int(d.sum()),
                               "n_high": int((s >= ev.cutoffs[m]).sum()), "cutoff": ev.cutoffs[m]})
            tauc.append(_time_auc_ci(t, d, s, horizons, e.bootstrap, cfg.seed, cfg.resample_jobs).assign(cohort=c, model=m))
            for h in horizons:
                surv = predicted_survival(cfg, m, s, h)
                if surv is None:
                    continue
                table = survival_calibration(t, d, surv, h, groups=min(e.calibration_groups, max(2, len(t) // 5)))
                cal.append(table.assign(cohort=c, model=m, horizon=h))
                status = np.where(t > h, 0, np.where(d == 1, 1, -1))
                known = status >= 0
                row = {"cohort": c, "model": m, "horizon": h, "observed_expected": observed_expected(t, d, surv, h)}
                if known.sum() >= 2 * e.calibration_groups and 0 < status[known].sum() < known.sum():
                    try:
                        r = hosmer_lemeshow(status[known], 1 - surv[known], g=e.calibration_groups)
                        row.update(hl_chisq=r.statistic, hl_df=r.df, hl_p=r.p_value, hl_n=int(known.sum()))
                    except ValueError as exc:  # e.g. one predicted value for everybody
                        row["note"] = str(exc)
                hl.append(row)
                nb = survival_net_benefit(t, d, 1 - surv, h, np.round(np.arange(0.01, 0.96, 0.01), 2))
                nb["model"] = nb.model.replace({"model": m})
                dca.append(nb.assign(cohort=c, horizon=h))
    return {"performance": pd.concat(perf, ignore_index=True) if perf else pd.DataFrame(),
            "risk_groups": pd.DataFrame(groups),
            "time_auc": pd.concat(tauc, ignore_index=True) if tauc else pd.DataFrame(),
            "calibration_groups": pd.concat(cal, ignore_index=True) if cal else pd.DataFrame(),
            "calibration": pd.DataFrame(hl),
            "decision_curve": (pd.concat(dca, ignore_index=True).drop_duplicates(["cohort", "horizon", "model",
                                                                                   "threshold"])
                               if dca else pd.DataFrame())}


def survival_figures(ev: EvaluationFrame, cfg, cohorts: list[str], fig_dir) -> dict[str, list[str]]:
    """Kaplan-Meier of the primary model's risk groups (HR, log-rank) and time-dependent
    AUC per cohort. Returns kind -> PNG paths."""
    from gastrorad.figures import plot_kaplan_meier, plot_time_auc, save_figure
    o = cfg.outcome
    figs: dict[str, list[str]] = {"km": [], "time_auc": []}
    for c in cohorts:
        got = _cohort_outcome(ev, cfg, c)
        if got is None:
            continue
        wide, t, d = got
        unit = f"Time ({o.time_unit})"
        # the primary model, or where it has no scores (S3's external centres without markers) the
        # first of the other drawn nomograms, else the last model, each at its own locked cut-off
        shown = next((m for m in [ev.primary, *cfg.fusion.extra_nomograms, *reversed(list(wide.columns))]
                      if m in wide.columns), None)
        s = wide[shown].to_numpy(float)
        group = np.where(s >= ev.cutoffs[shown], "high", "low")
        if len(set(group)) == 2:
            rg = risk_groups(t, d, s, ev.cutoffs[shown])
            figs["km"].append(str(save_figure(plot_kaplan_meier(t, d, group, hr=(rg.hr, rg.hr_lower, rg.hr_upper),
                                                                title=f"{shown}, {c}", time_label=unit),
                                              fig_dir / f"km_{c}")[0]))
        hmax = np.quantile(t, 0.9)
        grid = np.unique(np.round(np.linspace(max(t.min(), 1e-6), hmax, 8), 2))
        figs["time_auc"].append(str(save_figure(plot_time_auc(t, d, {m: wide[m].to_numpy(float) for m in wide},
                                                              grid, title=c, time_label=unit),
                                                fig_dir / f"time_auc_{c}")[0]))
    return figs
