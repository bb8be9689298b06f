"""``gastrorad signature`` and ``gastrorad fit``: from DL scores or deep features and the
clinical table to signatures, selected clinical factors, fusion models, locked cut-offs,
predictions for every cohort and the nomogram. Everything is fitted on training only.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gastrorad.config.study import StudyConfig
from gastrorad.data.cohorts import assign_cohorts
from gastrorad.data.tables import read_table
from gastrorad.errors import InputError, Problem
from gastrorad.io.atomic import atomic_write_text


def _clinical_with_cohorts(cfg: StudyConfig) -> pd.DataFrame:
    clinical = read_table(cfg.clinical_path)
    cohorts, problems = assign_cohorts(clinical, cfg, str(cfg.clinical_path))
    if problems:
        raise InputError(problems)
    return clinical.assign(cohort=clinical.patient_id.map(cohorts))


def build_signatures(cfg: StudyConfig, log=None) -> pd.DataFrame:
    """Signature table (patient_id, cohort, one column per signature), ``<output>/signatures.csv``.
    ``log`` (a callable taking one line) is told each LASSO as it starts, with its size and time."""
    global _log
    _log = log or (lambda line: None)
    out = cfg.output_dir
    clinical = _clinical_with_cohorts(cfg)
    base = clinical[["patient_id", "cohort"]]
    harm: dict = {"models": {}, "pcs": []}  # ComBat models and centre-effect PCs of each feature table
    preval: dict[str, pd.Series] = {}  # signature -> its pre-validated (out-of-fold) training values
    if not cfg.has_images:  # a clinical-only study: no image signature
        table, info = base.copy(), {"method": "none", "note": "clinical-only study (no image manifest)"}
    elif cfg.longitudinal is not None:
        table, info = _longitudinal_signatures(cfg, clinical, base)
    elif cfg.signature.method == "dl_probability":
        path = out / "dl_scores.csv"
        if not path.exists():
            raise InputError(Problem(str(path), "no DL scores: run `gastrorad score` first"))
        s = pd.read_csv(path, dtype={"patient_id": str})
        table = base.merge(s[["patient_id", "score"]].rename(columns={"score": "dl_score"}), on="patient_id",
                           how="inner")
        info = {"method": "dl_probability"}
        if "score_oof" in s.columns:  # k-fold training: each training patient's score from the model that held it out
            oof = s.set_index("patient_id").score_oof.reindex(clinical[clinical.cohort == "training"].patient_id)
            if oof.notna().all():
                preval["dl_score"] = oof
    else:
        table, info = base.copy(), {"method": "lasso", "phases": {}}
        for phase in cfg.preprocess.phases:
            path = out / f"features_{phase}.csv"
            if not path.exists():
                raise InputError(Problem(str(path), "no deep features: run `gastrorad extract-features` first"))
            f = pd.read_csv(path, dtype={"patient_id": str}).drop(columns=["cohort"], errors="ignore")
            feats = [c for c in f.columns if c != "patient_id"]
            d = base.merge(f, on="patient_id").merge(clinical.drop(columns=["cohort"]), on="patient_id")
            tr = d[d.cohort == "training"]
            sd = tr[feats].std()
            feats = [c for c in feats if sd[c] > 0]
            d = _harmonize(cfg, d, feats, "deep", phase, info, harm)
            icc_path = cfg.signature.icc_features.get(phase)
            if icc_path is None and cfg.signature.icc_from_readers and (out / f"features_{phase}_readers.csv").exists():
                icc_path = out / f"features_{phase}_readers.csv"  # re-segmentations listed in the manifest
            if icc_path is not None:
                feats, info.setdefault("icc", {})[phase] = icc_screen(cfg, cfg.resolve(icc_path), feats)
                if not feats:
                    raise InputError(Problem(str(icc_path), f"no feature of phase '{phase}' has ICC > "
                                             f"{cfg.signature.icc_threshold}"))
            name = f"rad_{phase}"
            fit = bagged_lasso_signature if cfg.signature.bagging == "network" else lasso_signature
            n_tr = int((d.cohort == "training").sum())
            d[name], info["phases"][phase] = (
                fit(cfg, d, feats, cfg.signature.lambda_rule, cfg.signature.nfolds, cfg.signature.nlambda,
                    label=f"deep {phase}") if fit is bagged_lasso_signature else
                _timed_lasso(f"deep {phase}", n_tr, len(feats), lambda: fit(
                    cfg, d, feats, cfg.signature.lambda_rule, cfg.signature.nfolds, cfg.signature.nlambda)))
            take_prevalidated(info["phases"][phase], d, name, preval)
            table = table.merge(d[["patient_id", name]], on="patient_id", how="left")
    from gastrorad.radiomics.study import radiomics_enabled, radiomics_paths
    if radiomics_enabled(cfg):
        if all(p.exists() for p in radiomics_paths(cfg)):
            table, info["radiomics"] = _handcrafted_signatures(cfg, clinical, table, info, harm, preval)
        else:  # `gastrorad run` always extracts them first; a stage-by-stage user may not have yet
            info["radiomics"] = "not extracted (run `gastrorad radiomics` for the handcrafted reference)"
    _write_harmonize(out, harm)
    _write_prevalidated(out, preval)
    atomic_write_text(out / "signatures.csv", table.to_csv(index=False))
    atomic_write_text(out / "signatures.json", json.dumps(info, indent=2, default=float))
    return table


def _harmonize(cfg: StudyConfig, d: pd.DataFrame, feats: list[str], kind: str, phase: str, info: dict,
               harm: dict) -> pd.DataFrame:
    """ComBat of one feature table (``kind`` deep or handcrafted, one phase) when the study asks for it
    (:func:`gastrorad.models.harmonize.harmonize_cohorts`), and its centre effect before / after
    (share of features differing across centres, PCs) for the report. ``d`` harmonised, or as it is."""
    from gastrorad.models.harmonize import centre_effects, harmonize_cohorts
    h = cfg.harmonize
    after = None
    if h.enabled and kind in h.apply_to and feats:
        after, model, record = harmonize_cohorts(
            d, feats, parametric=h.parametric, covariates=h.covariates, categorical=cfg.clinical.categorical,
            new_centre_min=h.new_centre_min, unseen=h.unseen_centres, label=f"{kind} {phase}", log=_log)
        hinfo = info.setdefault("harmonize", {"method": h.method, "parametric": h.parametric,
                                              "covariates": list(h.covariates), "new_centre_min": h.new_centre_min,
                                              "unseen_centres": h.unseen_centres})
        hinfo.setdefault(kind, {})[phase] = record
        harm["models"].setdefault(kind, {})[phase] = model.to_dict()
    if "center" in d.columns and d.center.notna().all() and d.center.nunique() >= 2 and feats:
        summary, pcs = centre_effects(d[feats], None if after is None else after[feats], d.center.astype(str))
        info.setdefault("centre_effects", {}).setdefault(kind, {})[phase] = summary
        stages = len(pcs) // len(d)  # before, and after when harmonised: each block in d's row order
        harm["pcs"].append(pcs.assign(patient_id=np.tile(d.patient_id.to_numpy(), stages),
                                      cohort=np.tile(d.cohort.to_numpy(), stages), table=kind, phase=phase))
        share = lambda st: f"{summary[st]['significant']}/{summary[st]['tested']}"  # noqa: E731
        _log(f"    centre effect: {kind} {phase}: features differing across centres (KW, FDR 5%) {share('before')}"
             + (f" before, {share('after')} after harmonisation" if "after" in summary else ""))
    return d if after is None else after


def _write_prevalidated(out: Path, preval: dict[str, pd.Series]) -> None:
    """``signatures_prevalidated.csv``: each signature's out-of-fold value for every training patient
    (``cv.glmnet(keep = TRUE)$fit.preval`` at the chosen lambda; for a k-fold trained network, the
    model that held the patient out). A stale file from an earlier run is removed when there is none."""
    path = out / PREVALIDATED_FILE
    if not preval:
        path.unlink(missing_ok=True)
        return
    frame = pd.DataFrame(preval)
    frame.index.name = "patient_id"
    atomic_write_text(path, frame.reset_index().to_csv(index=False))


PREVALIDATED_FILE = "signatures_prevalidated.csv"
# signature columns computed by a rule, not fitted to the outcome (S3's RECIST 1.1 and TB-delta baselines)
OUTCOME_FREE_PREFIXES = ("recist_", "tbdelta_")


def _write_harmonize(out: Path, harm: dict) -> None:
    """``harmonize.json`` (the fitted ComBat models, bundled for ``predict``) and ``centre_effects.csv``
    (the PCs the report draws), or neither when there is nothing to record (no stale file left)."""
    for name, content in (("harmonize.json", harm["models"] and json.dumps(harm["models"])),
                          ("centre_effects.csv", harm["pcs"] and pd.concat(harm["pcs"]).to_csv(index=False))):
        if content:
            atomic_write_text(out / name, content)
        else:
            (out / name).unlink(missing_ok=True)


#: Prefix of the handcrafted radiomics signature columns: a reference, never a fusion "signature".
HANDCRAFTED_PREFIX = "hcr_"

_log = lambda line: None  # noqa: E731 - the progress line printer of the signature stage being run


def _timed_lasso(what: str, n: int, p: int, fit):
    """Run ``fit()`` (a cross-validated LASSO), printing a line before and after with its size and time."""
    import time
    _log(f"    signature: {what}: LASSO on {n} training rows x {p} features ...")
    t0 = time.perf_counter()
    out = fit()
    _log(f"    signature: {what}: {len(out[1]['coefficients'])} features kept in {time.perf_counter() - t0:.1f} s")
    return out


def lasso_signature(cfg: StudyConfig, d: pd.DataFrame, feats: list[str], lambda_rule: str, nfolds: int,
                    nlambda: int = 100) -> tuple[np.ndarray, dict]:
    """LASSO (``cv.glmnet``, logistic or Cox by outcome) on the training rows of ``d``; returns
    the linear predictor of every row and the fit's summary (lambda, selected, coefficients)."""
    from gastrorad.models.lasso import cv_lasso_cox, cv_lasso_logistic
    tr = d[d.cohort == "training"]
    X = tr[feats]
    foldid = patient_folds(cfg, tr, nfolds)
    if cfg.outcome.kind == "binary":
        cv = cv_lasso_logistic(X, tr[cfg.outcome.label].to_numpy(), nfolds=nfolds, seed=cfg.seed, nlambda=nlambda,
                               n_jobs=cfg.resample_jobs, foldid=foldid)
    else:
        cv = cv_lasso_cox(X, tr[cfg.outcome.time], tr[cfg.outcome.event], nfolds=nfolds, seed=cfg.seed,
                          nlambda=nlambda, n_jobs=cfg.resample_jobs, foldid=foldid)
    coef = cv.coef_min if lambda_rule == "min" else cv.coef_1se
    lp = coef[0] + d[feats].to_numpy(float) @ coef[1:]
    preval = np.full(len(d), np.nan)
    preval[(d.cohort == "training").to_numpy()] = cv.prevalidated(lambda_rule)
    return lp, {"lambda": cv.lambda_min if lambda_rule == "min" else cv.lambda_1se,
                "selected": cv.selected(lambda_rule),
                "coefficients": {c: float(b) for c, b in zip(feats, coef[1:]) if b != 0},
                "intercept": float(coef[0]), PREVALIDATED: preval}


# Key of a signature fit's summary holding its pre-validated training values (popped before the summary is written)
PREVALIDATED = "_prevalidated"


def take_prevalidated(info: dict, d: pd.DataFrame, name: str, store: dict) -> None:
    """Move a signature's pre-validated training values out of its fit summary into ``store``
    (column name -> Series by patient_id): what :func:`fit_models` fits fusion models on."""
    values = info.pop(PREVALIDATED, None)
    if values is None:
        return
    tr = (d.cohort == "training").to_numpy()
    store[name] = pd.Series(np.asarray(values, float)[tr], index=d.patient_id.to_numpy()[tr])


def patient_folds(cfg: StudyConfig, rows: pd.DataFrame, nfolds: int, clinical: pd.DataFrame | None = None):
    """CV folds of a lesion-level study (``data.patient_column``): a patient's lesions in one fold, so a
    fold never validates on a patient it was fitted on; ``None`` (the solver's folds) otherwise. The
    patient column comes from ``rows``, else from ``clinical`` by patient_id."""
    from gastrorad.data.cohorts import grouped_fold_ids
    col = cfg.data.patient_column
    if col is None:
        return None
    if col in rows.columns:
        groups = rows[col]
    elif clinical is not None and col in clinical.columns:
        groups = rows.patient_id.map(clinical.set_index("patient_id")[col])
    else:
        return None
    return grouped_fold_ids(groups.to_numpy(), nfolds, cfg.seed)


def network_groups(feats: list[str]) -> dict[str, list[str]]:
    """Features grouped by the network copy they come from (``n<k>_`` prefix of a bank's stages)."""
    import re
    groups: dict[str, list[str]] = {}
    for c in feats:
        m = re.match(r"(n\d+)_", c)
        groups.setdefault(m.group(1) if m else "n0", []).append(c)
    return groups


def bagged_lasso_signature(cfg: StudyConfig, d: pd.DataFrame, feats: list[str], lambda_rule: str, nfolds: int,
                           nlambda: int = 100, label: str = "deep") -> tuple[np.ndarray, dict]:
    """One LASSO (:func:`lasso_signature`) per network copy's features; each copy's linear
    predictor is standardised with its training mean and SD and the copies that selected a
    feature are averaged. The average is itself linear in the features, so it is stored as one
    set of coefficients and applied by ``predict`` like any LASSO signature."""
    tr = (d.cohort == "training").to_numpy()
    X = d[feats].to_numpy(float)
    coef = pd.Series(0.0, index=feats)
    intercept, kept, per = 0.0, [], {}
    groups = network_groups(feats)
    n_tr = int(tr.sum())
    for k, (g, cols) in enumerate(groups.items(), start=1):
        lp, info = _timed_lasso(f"{label}, network {k}/{len(groups)}", n_tr, len(cols),
                                lambda: lasso_signature(cfg, d, cols, lambda_rule, nfolds, nlambda))
        per[g] = {"lambda": info["lambda"], "selected": info["selected"]}
        sd = float(np.std(lp[tr]))
        if not info["coefficients"] or sd <= 0:
            continue
        kept.append((g, info, float(np.mean(lp[tr])), sd))
    preval = np.zeros(len(d))
    for g, info, mean, sd in kept:
        for c, b in info["coefficients"].items():
            coef[c] += b / (sd * len(kept))
        intercept += (info["intercept"] - mean) / (sd * len(kept))
        # each copy's out-of-fold values on the scale of its in-sample standardisation, averaged as the copies are
        preval += (info[PREVALIDATED] - mean) / (sd * len(kept))
    lp = intercept + X @ coef.to_numpy()
    return lp, {"lambda": [p["lambda"] for p in per.values()], "selected": int((coef != 0).sum()),
                "coefficients": {c: float(b) for c, b in coef.items() if b != 0}, "intercept": float(intercept),
                "bagging": {"networks": len(per), "with_a_feature": [g for g, *_ in kept], "per_network": per},
                PREVALIDATED: preval if kept else np.full(len(d), np.nan)}


def drop_redundant(X: pd.DataFrame, threshold: float) -> list[str]:
    """Columns kept by a greedy redundancy filter: walking the columns in order, a column whose
    |Spearman rho| with an already kept one exceeds ``threshold`` is dropped."""
    r = X.rank().corr().abs().to_numpy()
    keep: list[int] = []
    for j in range(X.shape[1]):
        if all(r[j, k] <= threshold for k in keep):
            keep.append(j)
    return [X.columns[j] for j in keep]


def _handcrafted_signatures(cfg: StudyConfig, clinical: pd.DataFrame, table: pd.DataFrame, info_all: dict | None = None,
                            harm: dict | None = None, preval: dict | None = None):
    """The handcrafted radiomics reference: LASSO on each phase's IBSI features (training
    patients only; features constant or missing on training are left out)."""
    out, info = cfg.output_dir, {}
    for phase in cfg.preprocess.phases:
        path = out / f"radiomics_{phase}.csv"
        f = pd.read_csv(path, dtype={"patient_id": str}).drop(columns=["cohort"], errors="ignore")
        feats = [c for c in f.columns if c != "patient_id"]
        d = clinical.merge(f, on="patient_id")
        tr = d[d.cohort == "training"]
        feats = [c for c in feats if tr[c].notna().all() and np.isfinite(tr[c].to_numpy(float)).all()
                 and tr[c].std() > 0]
        d = d.dropna(subset=feats)
        d = _harmonize(cfg, d, feats, "handcrafted", phase, {} if info_all is None else info_all,
                       harm if harm is not None else {"models": {}, "pcs": []})
        n_all = len(feats)
        icc_info, readers = None, out / f"radiomics_{phase}_readers.csv"
        if cfg.signature.icc_from_readers and not cfg.signature.icc_features and readers.exists():
            feats, icc_info = icc_screen(cfg, readers, feats)
            if not feats:
                info[phase] = {"skipped": f"no handcrafted feature has ICC > {cfg.signature.icc_threshold}",
                               "icc": icc_info}
                continue
        if cfg.radiomics.max_correlation is not None:
            feats = drop_redundant(d[d.cohort == "training"][feats], cfg.radiomics.max_correlation)
        name = f"{HANDCRAFTED_PREFIX}{phase}"
        d[name], info[phase] = _timed_lasso(
            f"handcrafted {phase}", int((d.cohort == "training").sum()), len(feats),
            lambda: lasso_signature(cfg, d, feats, cfg.radiomics.lambda_rule, cfg.radiomics.nfolds,
                                    cfg.signature.nlambda))
        take_prevalidated(info[phase], d, name, {} if preval is None else preval)
        info[phase]["features"] = {"extracted": n_all, "after_redundancy_filter": len(feats)}
        if icc_info is not None:
            info[phase]["icc"] = icc_info
        table = table.merge(d[["patient_id", name]], on="patient_id", how="left")
    return table, info


def icc_screen(cfg: StudyConfig, path: Path, feats: list[str]) -> tuple[list[str], dict]:
    """``feats`` with ICC > ``signature.icc_threshold`` on the repeated readings in ``path``
    (patient_id, reader, features), and {"kept", "of"}: the deep signature's screen (S5) and the
    handcrafted reference's, so the two are compared like for like."""
    from gastrorad.models.icc import icc_filter
    rep = read_table(path)
    t = icc_filter(rep[["patient_id", "reader", *[c for c in feats if c in rep.columns]]],
                   threshold=cfg.signature.icc_threshold, form=cfg.signature.icc_form)
    keep = set(t.feature[t.keep])
    return [c for c in feats if c in keep], {"kept": int(t.keep.sum()), "of": int(len(t))}


RECIST_SCORE = {"CR": 0, "PR": 1, "SD": 2, "PD": 3}


def _longitudinal_signatures(cfg: StudyConfig, clinical: pd.DataFrame, base: pd.DataFrame):
    """S3: the LDLM/TDLM scores of every follow-up setting, plus the RECIST 1.1 response (scored
    CR 0, PR 1, SD 2, PD 3) and TB-delta (% change of the summed target-lesion area, area taken
    as pi/4 x diameter^2) between baseline and the last follow-up the setting allows."""
    from gastrorad.data.tables import load_manifest
    from gastrorad.models.recist import recist_table
    path = cfg.output_dir / "dl_scores.csv"
    if not path.exists():
        raise InputError(Problem(str(path), "no LDLM/TDLM scores: run `gastrorad score` first"))
    scores = pd.read_csv(path, dtype={"patient_id": str}).drop(columns=["cohort"], errors="ignore")
    table = base.merge(scores, on="patient_id", how="left")
    manifest, problems = load_manifest(cfg.manifest_path, cfg.manifest_path.parent)
    if problems:
        raise InputError(problems)
    m = manifest[(manifest.phase == cfg.preprocess.phases[0]) & (manifest.reader == "")].copy()
    m["diameter_mm"] = pd.to_numeric(m.diameter_mm, errors="coerce")
    m = m.dropna(subset=["diameter_mm"])
    info = {"method": "longitudinal", "columns": [c for c in scores.columns if c != "patient_id"]}
    if not m.empty:
        m["area_mm2"] = np.pi / 4 * m.diameter_mm ** 2
        rec = recist_table(m, area="area_mm2")
        for name, k in cfg.longitudinal.apply_followups.items():
            if k < 1:
                continue
            last = rec[rec.timepoint <= k].sort_values("timepoint").groupby("patient_id").tail(1)
            last = last.set_index("patient_id")
            table[f"recist_{name}"] = table.patient_id.map(last.recist.map(RECIST_SCORE))
            table[f"tbdelta_{name}"] = table.patient_id.map(last.tb_delta_pct)
            info["columns"] += [f"recist_{name}", f"tbdelta_{name}"]
        info["recist_scores"] = RECIST_SCORE
    return table, info


@dataclass
class FitResult:
    predictions: pd.DataFrame  # patient_id, cohort, model, score, lp, risk_group
    coefficients: dict[str, pd.DataFrame]
    selection: dict = field(default_factory=dict)
    cutoffs: dict = field(default_factory=dict)
    nomogram_png: str | None = None


def fit_models(cfg: StudyConfig) -> FitResult:
    """Encode and select clinical factors, fit each fusion model on training, apply to every
    cohort with cut-offs locked on training, and draw the nomogram."""
    from gastrorad.figures import plot_nomogram, save_figure
    from gastrorad.models.encoding import ClinicalEncoder
    from gastrorad.models.fusion import fit_cox_model, fit_logistic, lock_cutoff
    from gastrorad.models.nomogram import build_nomogram
    from gastrorad.models.selection import backward_aic, univariable_screen

    out = cfg.output_dir
    kind = "logistic" if cfg.outcome.kind == "binary" else "cox"
    clinical = _clinical_with_cohorts(cfg)
    sig_path = out / "signatures.csv"
    sigs = (pd.read_csv(sig_path, dtype={"patient_id": str}).drop(columns=["cohort"], errors="ignore")
            if sig_path.exists() else None)
    variables = cfg.clinical.variables
    enc = ClinicalEncoder(variables, categorical=cfg.clinical.categorical, ordinal=cfg.clinical.ordinal,
                          groups=cfg.clinical.groups, reference=cfg.clinical.reference, missing=cfg.clinical.missing)
    train = clinical[clinical.cohort == "training"]
    enc.fit(train)
    X = enc.transform(clinical, str(cfg.clinical_path))
    data = clinical.loc[X.index, ["patient_id", "cohort", *cfg.outcome.columns]].join(X)
    sig_cols = []
    if sigs is not None:
        data = data.merge(sigs, on="patient_id", how="left")
        # the handcrafted radiomics signature is the reference the deep one must beat: a fusion model
        # takes it only when named as an ingredient
        sig_cols = [c for c in sigs.columns if c != "patient_id" and not c.startswith(HANDCRAFTED_PREFIX)]
    tr_all = data[data.cohort == "training"]
    tr = tr_all.dropna(subset=sig_cols) if cfg.longitudinal is None else tr_all
    # A signature's training values are in-sample: it was fitted on these patients' outcomes, so next to
    # clinical terms it would take all the weight (a fusion model equal to the signature). Fusion models
    # are fitted on its pre-validated values instead (Tibshirani and Efron 2002): each training patient's
    # value from the signature fitted without that patient's fold. Training predictions keep the
    # signature as the bundle applies it.
    tr_fit, prevalidated = _with_prevalidated(cfg, tr_all, sig_cols)
    y_kw = ({"outcome": cfg.outcome.label} if kind == "logistic" else
            {"time": cfg.outcome.time, "event": cfg.outcome.event})
    terms = dict(enc.terms_)
    selection = {}
    if cfg.clinical.selection.screen_p is not None and terms:
        screen = univariable_screen(tr, terms, kind=kind, p_threshold=cfg.clinical.selection.screen_p, **y_kw)
        selection["screen"] = screen.to_dict("records")
        terms = {t: terms[t] for t in screen[screen.selected].term}
    if cfg.clinical.selection.method == "stepwise_aic" and terms:
        step = backward_aic(tr, terms, kind=kind, **y_kw)
        selection["stepwise"] = step.history
        terms = {t: terms[t] for t in step.terms}
    elif cfg.clinical.selection.method == "lasso" and terms:
        from gastrorad.models.lasso import cv_lasso_cox, cv_lasso_logistic
        cols = [c for t in terms.values() for c in t]
        sel = cfg.clinical.selection
        if kind == "logistic":
            cv = cv_lasso_logistic(tr[cols], tr[cfg.outcome.label].to_numpy(), nfolds=sel.nfolds, seed=cfg.seed,
                                   n_jobs=cfg.resample_jobs, foldid=patient_folds(cfg, tr, sel.nfolds, clinical))
        else:
            cv = cv_lasso_cox(tr[cols], tr[cfg.outcome.time], tr[cfg.outcome.event], nfolds=sel.nfolds, seed=cfg.seed,
                              n_jobs=cfg.resample_jobs, foldid=patient_folds(cfg, tr, sel.nfolds, clinical))
        kept = set(cv.selected(sel.lambda_rule))
        selection["lasso"] = {"lambda": cv.lambda_min if sel.lambda_rule == "min" else cv.lambda_1se,
                              "selected": sorted(kept)}
        terms = {t: cs for t, cs in terms.items() if kept & set(cs)}  # a term stays whole if any column is kept
    selection["clinical_terms"] = list(terms)
    preds, coefs, cutoffs, specs = [], {}, {}, {}
    nomo_png = None
    for name, ingredients in cfg.fusion.models.items():
        cols = []
        for ing in ingredients:
            if ing == "clinical":
                cols += [c for t in terms.values() for c in t]
            elif ing == "signature":
                cols += sig_cols
            elif ing in data.columns:
                cols.append(ing)
            elif ing in enc.terms_:  # a clinical variable by name: all its design columns (e.g. sex -> sexmale)
                cols += enc.terms_[ing]
            else:
                raise InputError(Problem("study file", f"fusion model '{name}': unknown ingredient '{ing}'",
                                         column=f"fusion.models.{name}"))
        trm = tr_fit.dropna(subset=cols)  # each model on the training patients that have its ingredients
        constant = [c for c in cols if trm[c].nunique(dropna=True) <= 1]
        if constant:  # e.g. a LASSO signature that selected no feature: no information, and singular in a fit
            selection.setdefault("constant_dropped", {})[name] = constant
            cols = [c for c in cols if c not in constant]
        if not cols:
            selection.setdefault("skipped_models", {})[name] = "no ingredient left (e.g. no clinical term selected)"
            continue
        if kind == "logistic":
            with _warnings_seen() as seen:
                m = fit_logistic(trm, cfg.outcome.label, cols)
            lp = m.linear_predictor(data)
            score = 1 / (1 + np.exp(-lp))
            coefs[name] = m.table
            cut = lock_cutoff(m.predict(trm), y=trm[cfg.outcome.label], method=cfg.fusion.cutoff,
                              value=cfg.fusion.cutoff_value)
            intercept, slopes = m.coef[0], dict(zip(cols, m.coef[1:]))
            specs[name] = {"kind": "logistic", "columns": cols, "intercept": float(m.coef[0]),
                           "coef": [float(b) for b in m.coef[1:]], "cutoff": float(cut)}
        else:
            with _warnings_seen() as seen:
                res, zph = fit_cox_model(trm, cfg.outcome.time, cfg.outcome.event, cols)
            lp = res.linear_predictor(data)
            score = lp
            coefs[name] = res.table.merge(zph.rename(columns={"chisq": "zph_chisq", "p": "zph_p"})[
                ["covariate", "zph_chisq", "zph_p"]], on="covariate", how="left")
            if cfg.fusion.cutoff == "youden" and cfg.fusion.horizon is None:
                raise InputError(Problem("study file", "a Youden cut-off on a survival outcome needs fusion.horizon "
                                         "(or use cutoff: median / fixed)", column="fusion.horizon"))
            cut = lock_cutoff(res.linear_predictor(trm), time=trm[cfg.outcome.time], event=trm[cfg.outcome.event],
                              method=cfg.fusion.cutoff, horizon=cfg.fusion.horizon, value=cfg.fusion.cutoff_value)
            intercept, slopes = 0.0, dict(zip(cols, res.coef))
            horizons = sorted({*cfg.fusion.nomogram_horizons, *evaluation_horizons(cfg)})
            specs[name] = {"kind": "cox", "columns": cols, "intercept": 0.0, "coef": [float(b) for b in res.coef],
                           "cutoff": float(cut),
                           "baseline_survival": {str(t): s for t, s in _cox_baseline(res, horizons).items()}}
        cutoffs[name] = cut
        preds.append(pd.DataFrame({"patient_id": data.patient_id, "cohort": data.cohort, "model": name,
                                   "score": score, "lp": lp,
                                   "risk_group": np.where(np.isnan(np.asarray(score, float)), "",
                                                          np.where(np.asarray(score) >= cut, "high", "low"))}))
        atomic_write_text(out / "models" / f"{file_stem(name)}_coefficients.csv", coefs[name].to_csv(index=False))
        unstable = [w for w in seen if "separation" in w or "did not converge" in w or "infinite" in w]
        if unstable and (name == cfg.fusion.nomogram or name in cfg.fusion.extra_nomograms):
            # coefficients that run off to infinity give axes no one can read: say why instead of drawing them
            selection.setdefault("nomograms_skipped", {})[name] = (
                f"not drawn: the fit is unstable on {len(trm)} training patients ({unstable[0]})")
            specs[name]["nomogram_skipped"] = selection["nomograms_skipped"][name]
        elif name == cfg.fusion.nomogram or name in cfg.fusion.extra_nomograms:
            nomo_terms = _nomogram_terms(slopes, enc)
            # a Cox nomogram needs a horizon to read survival at: the study's evaluation horizons when none is given
            baseline = (_cox_baseline(res, cfg.fusion.nomogram_horizons or evaluation_horizons(cfg))
                        if kind == "cox" else {})
            # axes over the training data: encoded columns, plus the (grouped) levels of categorical variables
            src = trm.copy()
            grouped = enc._grouped(clinical.set_index("patient_id").loc[trm.patient_id])
            for var in enc.categorical:
                src[var] = grouped[var].fillna(enc.impute_[var]).to_numpy()
            nomo = build_nomogram(nomo_terms, src, intercept=intercept, kind=kind, baseline_survival=baseline)
            labels = {a.name: _signature_label(a.name) for a in nomo.axes}
            png, _ = save_figure(plot_nomogram(nomo, title=f"Nomogram: {name}",
                                                 time_unit=cfg.outcome.time_unit, axis_labels=labels),
                                 out / "figures" / f"nomogram_{file_stem(name)}")
            nomo_png = nomo_png if name != cfg.fusion.nomogram and nomo_png else str(png)
            specs[name]["nomogram"] = {"axes": [{"name": a.name, "values": [_plain(v) for v in a.values],
                                                 "xbeta": [float(x) for x in a.xbeta], "categorical": a.categorical,
                                                 "coef": ({str(k): float(v) for k, v in a.coef.items()}
                                                          if a.categorical else float(a.coef))} for a in nomo.axes],
                                       "intercept": float(nomo.intercept), "sc": float(nomo.sc)}
            atomic_write_text(out / "models" / f"nomogram_{file_stem(name)}_points.csv",
                              nomo.points_table().to_csv(index=False))
    # every model may have been skipped (e.g. a tiny cohort where neither LASSO nor the clinical screen keeps
    # anything): the signatures are still evaluated, and fit.json says why each model is missing
    predictions = (pd.concat(preds, ignore_index=True) if preds else
                   pd.DataFrame(columns=["patient_id", "cohort", "model", "score", "lp", "risk_group"]))
    atomic_write_text(out / "predictions.csv", predictions.to_csv(index=False))
    atomic_write_text(out / "models" / "fit.json", json.dumps({
        "kind": kind, "selection": selection, "cutoffs": cutoffs, "encoding": enc.report().to_dict("records"),
        "encoder": enc.to_dict(), "signature_columns": sig_cols, "models": specs,
        "signature_training_values": {c: "pre-validated (out-of-fold)" if c in prevalidated else
                                      "not fitted to the outcome" if c.startswith(OUTCOME_FREE_PREFIXES) else
                                      "in-sample" for c in sig_cols},
        # the model whose nomogram exists (a skipped one, see selection.nomograms_skipped, has none to serve)
        "nomogram_model": cfg.fusion.nomogram if "nomogram" in specs.get(cfg.fusion.nomogram, {}) else None},
        indent=2, default=_plain))
    return FitResult(predictions, coefs, selection, cutoffs, nomo_png)


def _with_prevalidated(cfg: StudyConfig, tr_all: pd.DataFrame, sig_cols: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The training rows with each signature's values replaced by its pre-validated ones
    (``signatures_prevalidated.csv``) where every training patient has one; the columns replaced."""
    path = cfg.output_dir / PREVALIDATED_FILE
    if not cfg.fusion.prevalidate or not path.exists() or not sig_cols:
        return tr_all, []
    pv = pd.read_csv(path, dtype={"patient_id": str}).set_index("patient_id")
    out, done = tr_all.copy(), []
    for c in sig_cols:
        if c not in pv.columns:
            continue
        values = pv[c].reindex(out.patient_id)
        has = out[c].notna().to_numpy()
        if values.to_numpy()[has].size and np.isfinite(values.to_numpy(float)[has]).all():
            out.loc[has, c] = values.to_numpy(float)[has]
            done.append(c)
    return out, done


def _signature_label(col: str) -> str:
    """A nomogram axis label: ``rad_<phase>`` -> "Deep signature (<phase>)" (as the report names it)."""
    return f"Deep signature ({col[4:]})" if col.startswith("rad_") else col


@contextlib.contextmanager
def _warnings_seen():
    """The messages of the StatisticsWarnings raised inside the block (a list filled on exit);
    the warnings themselves still reach the caller (the run records them)."""
    import warnings
    from gastrorad.errors import StatisticsWarning
    seen: list[str] = []
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always", StatisticsWarning)
        yield seen
    for r in records:
        if issubclass(r.category, StatisticsWarning):
            seen.append(str(r.message))
        warnings.warn_explicit(r.message, r.category, r.filename, r.lineno)


def file_stem(name: str) -> str:
    """A model name as a file name part (``Nomo-w/o-TDLM`` -> ``Nomo-w_o-TDLM``)."""
    return "".join(ch if ch.isalnum() or ch in "-_.+" else "_" for ch in str(name))


def _plain(v):
    """JSON-safe value (numpy scalars to Python)."""
    if isinstance(v, np.generic):
        return v.item()
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def evaluation_horizons(cfg: StudyConfig) -> list[float]:
    """Survival horizons of evaluation: evaluation.horizons, else fusion.horizon, else 12."""
    if cfg.evaluation.horizons:
        return list(cfg.evaluation.horizons)
    return [cfg.fusion.horizon if cfg.fusion.horizon is not None else 12.0]


def _nomogram_terms(slopes: dict, enc) -> dict:
    """Design-column slopes regrouped by original variable (categorical levels together)."""
    terms, used = {}, set()
    for var, cols in enc.terms_.items():
        if var in enc.categorical:
            levels = {lv: slopes[c] for lv, c in zip(enc.levels_[var][1:], cols) if c in slopes}
            if levels:
                terms[var] = levels
                used |= set(cols)
    for c, b in slopes.items():
        if c not in used:
            terms[c] = b
    return terms


def _cox_baseline(res, horizons) -> dict:
    """S0(t) at covariates 0 at each horizon: the Efron estimator for the Efron fit, as
    ``survfit.coxph`` and ``rms::cph``'s ``Survival()`` (see ``CoxResult.baseline_survival``)."""
    if not horizons:
        return {}
    return {t: float(s) for t, s in zip(horizons, res.baseline_survival(list(horizons)))}
