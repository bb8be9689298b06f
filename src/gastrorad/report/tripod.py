"""The TRIPOD+AI checklist (Collins et al., BMJ 2024), filled where the run knows the answer.

Items the run cannot know (ethics, funding, patient involvement, fairness across groups
it was not told about) are left for the authors and shown as such.
"""

from __future__ import annotations


def tripod_checklist(cfg, metrics: dict, fit: dict) -> list[tuple[str, str, str]]:
    """Rows of (item, topic, answer from this run or "")."""
    pp = cfg.preprocess
    o = cfg.outcome
    cohorts = metrics.get("tables", {}).get("cohorts", [])
    sizes = "; ".join(f"{c['cohort']}: n={c['patients']}" + (f", {c.get('positive')} positive" if "positive" in c
                                                            else f", {c.get('events')} events") for c in cohorts)
    centres = sorted({x.strip() for c in cohorts for x in str(c.get("centres", "")).split(",") if x.strip()})
    window = pp.window.bounds
    sel = cfg.clinical.selection
    outcome = (f"binary outcome '{o.label}'" if o.kind == "binary" else
               f"time to event ('{o.time}', '{o.event}', {o.time_unit})")
    model = (f"{cfg.model.backbone} ({cfg.model.spatial_dims}D), pretrained weights: "
             f"{'yes (local file)' if cfg.model.pretrained else 'none (random initialisation)'}; loss {cfg.training.loss}, "
             f"{cfg.training.epochs} epochs max, optimiser {cfg.training.optimizer}, lr {cfg.training.lr}")
    if cfg.training.distill is not None:
        model += "; Progressive Distill"
    fusion = "logistic regression" if o.kind == "binary" else "Cox proportional hazards (Efron ties)"
    measures = ("AUC with DeLong CI and paired test, NRI/IDI, calibration intercept/slope/Brier and Hosmer-Lemeshow, "
                "net benefit, accuracy/sensitivity/specificity/PPV/NPV at the training cut-off"
                if o.kind == "binary" else
                "Harrell C with CI, HR and log-rank of risk groups at the training cut-off, time-dependent AUC, "
                "t-year calibration, net benefit")
    kept = ", ".join(fit.get("selection", {}).get("clinical_terms", []))
    usage = ("training cohort only for model fitting, selection, imputation and cut-offs; every other cohort for "
             "evaluation only")
    vc = cfg.training.val_cohort
    if vc and cfg.signature.method == "dl_probability":
        usage = (f"training cohort for model fitting, imputation and cut-offs; the {vc} cohort also for selecting "
                 f"the deep model (early stopping and checkpoint choice), so its results are not an independent "
                 f"evaluation of that model; every other cohort for evaluation only")
    return [
        ("1", "Title: identify the study as developing/evaluating a prediction model", ""),
        ("5a", "Data sources", f"image manifest and clinical table named in the study file; {len(centres)} centre(s)"),
        ("6a", "Setting and eligibility", f"centres {', '.join(centres)}" if centres else ""),
        ("7", "Data preparation", f"phases {', '.join(pp.phases)}; spacing {pp.spacing or 'native'} mm "
                                  f"({pp.interpolation}); HU window [{window[0]:g}, {window[1]:g}]"
                                  f"{' with site windows' if pp.windows_by_site else ''}; {pp.normalize} "
                                  f"normalisation; patch mode {pp.patch.mode}{_harmonisation(cfg)}"),
        ("8a", "Outcome", outcome),
        ("9a", "Predictors", f"deep-learning signature ({cfg.signature.method}); clinical candidates: "
                             f"{', '.join(cfg.clinical.variables) or 'none'}"),
        ("10", "Sample size", sizes),
        ("11", "Missing data", f"clinical: {cfg.clinical.missing} (values fitted on training, reported with the models)"),
        ("12a", "How data were used (development vs evaluation)", usage),
        ("12c", "Modelling approach", f"{model}; fusion by {fusion}"),
        ("12d", "Predictor selection", (f"univariable screen P < {sel.screen_p}" if sel.screen_p is not None else "no univariable screen")
         + f", then {sel.method}; kept: {kept or 'none'}" if cfg.clinical.variables else "no clinical candidates "
         "(image-only study)"),
        ("12e", "Class imbalance", "class weights" if cfg.training.class_weights else
         ("balanced sampling" if cfg.training.balanced_sampling else "none applied")),
        ("12f", "Performance measures", measures),
        ("12g", "Model updating / recalibration", "none: the locked model is applied unchanged"),
        ("12h", "Fairness across groups", ""),
        ("14", "Ethics approval and consent", ""),
        ("18c", "Code and software", "gastrorad (Apache-2.0); versions and seed in this report; resolved study file "
                                     "in the run folder"),
        ("20a", "Participants: flow and characteristics", "cohort flow and Table 1 in this report"),
        ("22", "Full model specification", "coefficients of every fusion model, the nomogram, locked cut-offs and the "
                                           "model bundle (weights and parameters) in the run folder"),
        ("23a", "Model performance with CIs", "per cohort in this report (metrics also as JSON and CSV)"),
        ("25", "Interpretation, limitations", ""),
    ]


def _harmonisation(cfg) -> str:
    """Item 7's words on ComBat: how it was fitted and which centres were adapted label-free from their
    own features (from signatures.json), or "" when the study does not harmonise."""
    import json
    h = cfg.harmonize
    if not h.enabled:
        return ""
    text = (f"; ComBat harmonisation of the {' and '.join(h.apply_to)} features across centres "
            f"({'parametric' if h.parametric else 'non-parametric'} EB, fitted on training"
            + (f", covariates kept: {', '.join(h.covariates)}" if h.covariates else "") + ")")
    try:
        info = json.loads((cfg.output_dir / "signatures.json").read_text(encoding="utf-8")).get("harmonize", {})
    except (OSError, ValueError):
        info = {}
    adapted = sorted({f"{c} (n={n})" for t in info.values() if isinstance(t, dict) for rec in t.values()
                      if isinstance(rec, dict) for c, n in rec.get("adapted", {}).items()})
    if adapted:
        text += (f"; centres unseen in training adapted label-free from their own features (>= {h.new_centre_min} "
                 f"patients, no outcome used): {', '.join(adapted)}")
    return text
