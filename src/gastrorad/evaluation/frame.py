"""The long table every evaluation reads: one row per patient x model, with its cohort,
outcome, score, the probability (binary) and the risk group at the cut-off locked on training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gastrorad.config.study import StudyConfig
from gastrorad.errors import InputError, Problem
from gastrorad.models.fusion import lock_cutoff
from gastrorad.models.pipeline import _clinical_with_cohorts

SIGNATURE_NAMES = {"dl_score": "DL signature"}
#: Display prefixes: a deep signature column ``rad_<phase>`` and the handcrafted ``hcr_<phase>``. "rad" alone reads
#: as radiomics, the handcrafted kind, in this field, so the report never shows the bare column name.
DEEP_LABEL, HANDCRAFTED_LABEL = "Deep signature", "Handcrafted radiomics signature"


@dataclass
class EvaluationFrame:
    long: pd.DataFrame  # patient_id, cohort, model, score, prob (binary), group, + outcome columns
    models: list[str]  # in display order: signatures first, then the fusion models
    cutoffs: dict[str, float]
    kind: str  # binary / survival
    primary: str  # the model shown alone (KM, nomogram): fusion.nomogram, else the last fusion model
    clinical: pd.DataFrame  # clinical table with cohorts
    signatures: list[str] = None  # the image signatures among ``models`` (deep and handcrafted)
    #: binary: how each signature's probability was made (its training logistic refit, or the network's own)
    probability_source: dict = None


def signature_display(col: str) -> str:
    """Display name of a signature column: ``rad_<phase>`` -> "Deep signature (<phase>)",
    ``hcr_<phase>`` -> "Handcrafted radiomics signature (<phase>)", ``dl_score`` -> "DL signature"."""
    if col.startswith("hcr_"):
        return f"{HANDCRAFTED_LABEL} ({col[4:]})"
    if col.startswith("rad_"):
        return f"{DEEP_LABEL} ({col[4:]})"
    return SIGNATURE_NAMES.get(col, col)


def is_handcrafted(model: str) -> bool:
    return model.startswith(HANDCRAFTED_LABEL)


def reference_model(cfg: StudyConfig, models: list[str]) -> str:
    """The model every other is compared with: ``evaluation.reference`` as a fusion model, a
    signature column (shown by its display name) or 'handcrafted' (the first handcrafted radiomics
    signature); the first model when it is null or (e.g. a model skipped in a tiny cohort) absent."""
    ref = cfg.evaluation.reference
    if ref == "handcrafted":
        ref = next((m for m in models if is_handcrafted(m)), None)
    elif ref is not None and ref not in models:
        ref = signature_display(ref)
    return ref if ref in models else models[0]


def signature_probabilities(d: pd.DataFrame, label: str, name: str = "signature") -> tuple[np.ndarray, dict]:
    """A signature's score as a probability: the logistic refit ``glm(y ~ score, binomial)`` on the
    training rows of ``d``, applied to every row. A linear predictor (a LASSO or bagged signature)
    is not a probability; NRI, IDI, calibration, Brier and net benefit are computed on this refit
    (the AUC does not change: the refit is monotone increasing when its slope is positive)."""
    from gastrorad.models.fusion import fit_logistic
    tr = d[d.cohort == "training"]
    col = f"{name}: probability refit on training"  # the name a separation warning carries
    m = fit_logistic(tr.assign(**{col: tr.score.to_numpy(float)}), label, [col])
    lp = m.coef[0] + m.coef[1] * d.score.to_numpy(float)
    return 1 / (1 + np.exp(-np.clip(lp, -700, 700))), {"intercept": float(m.coef[0]), "slope": float(m.coef[1])}


def load_evaluation_frame(cfg: StudyConfig) -> EvaluationFrame:
    out = cfg.output_dir
    path = out / "predictions.csv"
    if not path.exists():
        raise InputError(Problem(str(path), "no predictions: run `gastrorad fit` first"))
    fit = json.loads((out / "models" / "fit.json").read_text(encoding="utf-8"))
    preds = pd.read_csv(path, dtype={"patient_id": str})
    clinical = _clinical_with_cohorts(cfg)
    kind = cfg.outcome.kind
    outcome_cols = cfg.outcome.columns
    parts, cutoffs, models, refits = [], {}, [], {}
    sig_path = out / "signatures.csv"
    if cfg.evaluation.signatures and sig_path.exists():
        sigs = pd.read_csv(sig_path, dtype={"patient_id": str})
        for col in [c for c in sigs.columns if c not in ("patient_id", "cohort")]:
            name = signature_display(col)
            d = sigs[["patient_id", "cohort", col]].dropna().rename(columns={col: "score"})
            d = d.merge(clinical[["patient_id", *outcome_cols]], on="patient_id")
            tr = d[d.cohort == "training"]
            # the study's rule; a fixed value belongs to the fusion model's scale, so signatures then use
            # Youden (binary) or the training median (survival)
            method = cfg.fusion.cutoff if cfg.fusion.cutoff != "fixed" else ("youden" if kind == "binary" else "median")
            if kind == "binary":
                cut = lock_cutoff(tr.score, y=tr[cfg.outcome.label], method=method)
            else:
                if method == "youden" and cfg.fusion.horizon is None:
                    method = "median"
                cut = lock_cutoff(tr.score, time=tr[cfg.outcome.time], event=tr[cfg.outcome.event], method=method,
                                  horizon=cfg.fusion.horizon)
            cutoffs[name] = float(cut)
            part = d[["patient_id", "cohort", "score"]].assign(model=name)
            if kind == "binary":
                if d.score.between(0, 1).all() and col in SIGNATURE_NAMES:
                    part["prob"] = d.score.to_numpy(float)  # the DL model's own probability
                    refits[name] = "the network's predicted probability"
                else:
                    try:
                        part["prob"], refits[name] = signature_probabilities(d, cfg.outcome.label, name)
                    except ValueError:  # a constant signature (its LASSO kept no feature): nothing to evaluate
                        refits[name] = "not evaluated: constant on training (its LASSO kept no feature)"
                        del cutoffs[name]
                        continue
            parts.append(part)
            models.append(name)
    fusion_models = list(dict.fromkeys(preds.model))
    for name in fusion_models:
        cutoffs[name] = float(fit["cutoffs"][name])
    parts.append(preds[["patient_id", "cohort", "model", "score"]].assign(prob=np.nan) if kind == "binary"
                 else preds[["patient_id", "cohort", "model", "score"]])
    models += fusion_models
    long = pd.concat(parts, ignore_index=True).merge(clinical[["patient_id", *outcome_cols]], on="patient_id")
    long = long.dropna(subset=["score"])
    if kind == "binary":  # fusion models' scores are their fitted probabilities; signatures' come refitted above
        fused = long.model.isin(fusion_models).to_numpy()
        long["prob"] = np.where(fused, long.score, long["prob"]) if "prob" in long.columns else long.score
    long["group"] = np.where(long.score.to_numpy(float) >= long.model.map(cutoffs).to_numpy(float), "high", "low")
    primary = cfg.fusion.nomogram if cfg.fusion.nomogram in fusion_models else (fusion_models[-1] if fusion_models
                                                                                 else models[-1])
    signatures = [m for m in models if m not in fusion_models]
    return EvaluationFrame(long, models, cutoffs, kind, primary, clinical, signatures, refits)


def wide_scores(long: pd.DataFrame, cohort: str, models: list[str], value: str = "score") -> pd.DataFrame:
    """Patients of one cohort x models (only patients every model scored), outcome columns kept."""
    d = long[long.cohort == cohort]
    wide = d.pivot_table(index="patient_id", columns="model", values=value, aggfunc="first")
    wide = wide[[m for m in models if m in wide.columns]]
    wide = wide.loc[:, wide.notna().any()]  # a model without scores in this cohort (e.g. no markers) is left out
    return wide.dropna()
