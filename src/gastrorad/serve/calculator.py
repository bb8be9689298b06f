"""The nomogram calculator: a locked model's scores from clinical values alone.

Runs :func:`gastrorad.bundle.predict.score_models`, the code ``gastrorad predict`` runs,
on a one-row table that has been through the same CSV reader as a user's table, so the
numbers are the ones ``predict`` gives for the same values. Models that need an image
signature are not scored; the nomogram shows the clinical axes' points only.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd

from gastrorad.bundle.predict import score_models
from gastrorad.errors import InputError, Problem
from gastrorad.io.safe_paths import id_problem
from gastrorad.serve.registry import ServedModel

SOURCE = "clinical values"


def _num(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def clinical_frame(model: ServedModel, patient_id: str, values: dict, source: str = SOURCE) -> pd.DataFrame:
    """One patient's clinical row, as ``read_table`` would read it from a CSV file."""
    problems = []
    why = id_problem(str(patient_id))
    if why:
        problems.append(Problem(source, why, column="patient_id"))
    wanted = model.info["clinical_required"]
    unknown = [k for k in values if k not in wanted]
    problems += [Problem(source, f"not an input of this model (it uses {', '.join(wanted)})", column=k)
                 for k in unknown]
    if problems:
        raise InputError(problems)
    row = {"patient_id": str(patient_id), **{v: values.get(v) for v in wanted}}
    text = pd.DataFrame([row]).to_csv(index=False)
    return pd.read_csv(io.StringIO(text), dtype={"patient_id": str})


def range_flags(model: ServedModel, clin: pd.DataFrame, signature: dict | None = None) -> list[dict]:
    """Values outside the training cohort's range, missing values that will be imputed."""
    flags = []
    inputs = model.clinical_inputs()
    row = clin.iloc[0]
    for v, spec in inputs.items():
        raw = row.get(v)
        if raw is None or (isinstance(raw, float) and np.isnan(raw)) or str(raw).strip() == "":
            flags.append({"variable": v, "value": None,
                          "reason": f"missing: the locked model imputes its training value {spec.get('impute')}"})
            continue
        if spec.get("type") == "numeric" and spec.get("range"):
            lo, hi = spec["range"]
            x = pd.to_numeric(pd.Series([raw]), errors="coerce").iloc[0]
            if pd.notna(x) and not lo <= x <= hi:
                flags.append({"variable": v, "value": float(x),
                              "reason": f"outside the training range [{lo:g}, {hi:g}]: the model extrapolates"})
    for col, x in (signature or {}).items():
        rng = model.card.get("signature_ranges", {}).get(col)
        if rng and x is not None and np.isfinite(x) and not rng[0] <= x <= rng[1]:
            flags.append({"variable": col, "value": float(x),
                          "reason": f"image signature outside the training range [{rng[0]:.3g}, {rng[1]:.3g}]"})
    return flags


def as_result(model: ServedModel, preds: pd.DataFrame, patient_id: str) -> dict:
    """One patient's rows of a predictions table (``score_models`` / predictions.csv) as JSON."""
    p = preds[preds.patient_id.astype(str) == str(patient_id)]
    out = {"patient_id": str(patient_id), "models": {}, "nomogram": None, "signature": {}}
    nomo_model = model.info.get("nomogram_model")
    for _, r in p.iterrows():
        name = r["model"]
        needs = name not in model.calculator_models
        have_score = _num(r["score"]) is not None
        entry = {"kind": model.info["models"][name]["kind"], "needs_image": needs, "cutoff": float(r["cutoff"]),
                 "score": _num(r["score"]), "lp": _num(r["lp"]),
                 "risk_group": (r["risk_group"] if isinstance(r["risk_group"], str) else "") if have_score else ""}
        surv = {c[len("survival_at_"):]: _num(r[c]) for c in p.columns if c.startswith("survival_at_")
                and pd.notna(r[c])}
        if surv:
            entry["survival"] = surv
        if entry["kind"] == "logistic" and have_score:
            entry["probability"] = entry["score"]
        out["models"][name] = entry
        if name == nomo_model:
            axes = [c for c in p.columns if c.startswith("points_") and c != "points_total"]
            pts = {c[len("points_"):]: _num(r[c]) for c in axes}
            complete = all(v is not None for v in pts.values())
            out["nomogram"] = {"model": name, "points": pts, "complete": complete,
                               "total": _num(r["points_total"]) if complete else None}
    for col in model.info["signature_columns"]:
        key = "DL signature" if col == "dl_score" else col
        if key in p.columns and len(p):
            out["signature"][col] = _num(p[key].iloc[0])
    return out


def calculate(model: ServedModel, values: dict, patient_id: str = "patient") -> tuple[dict, pd.DataFrame]:
    """Scores of the models that need no image, and the clinical axes' nomogram points.

    Returns the JSON result and the predictions rows (the columns of predictions.csv).
    """
    clin = clinical_frame(model, patient_id, values)
    sig = pd.DataFrame({"patient_id": [str(patient_id)],
                        **{c: [np.nan] for c in model.info["signature_columns"]}})
    names = list(model.calculator_models)
    nomo = model.info.get("nomogram_model")
    if nomo and nomo not in names and "nomogram" in model.fit["models"].get(nomo, {}):
        names.append(nomo)  # its clinical axes' points; its score needs the image
    if not names:
        raise InputError(Problem(SOURCE, "every model of this bundle needs an image signature: submit an image job"))
    with np.errstate(invalid="ignore"):
        preds = score_models(model.fit, clin, sig, SOURCE, clin_rows=[None], models=names)
    result = as_result(model, preds, str(patient_id))
    result["flags"] = range_flags(model, clin)
    return result, preds
