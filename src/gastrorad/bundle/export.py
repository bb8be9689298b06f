"""The model bundle: everything needed to score a new patient, locked.

``<output>/bundle/``::

    bundle.json       what the bundle expects (phases, patch mode, channels, clinical variables),
                      the models and their cut-offs, software versions, and the SHA-256 of every file
    study.yaml        the resolved study file (preprocessing, model, signature and fusion parameters)
    card.json         the model card (since issue 14): intended use, cohorts, performance with CIs,
                      TRIPOD+AI items, training ranges of the clinical inputs and of the signature;
                      bundles exported before it have none and are still served and applied
    fit.json          clinical encoding (levels, reference, imputation values), fusion coefficients,
                      cut-offs, Cox baseline survival, nomogram axes
    signatures.json   how the image signature is made (LASSO coefficients for deep features)
    harmonize.json    the ComBat harmonisation of the features (``harmonize:``), when the study has one
    weights/*.pt      the deep model(s) or the feature extractor

``load_bundle`` refuses a bundle whose files do not match their recorded hashes, and a bundle
whose JSON or YAML files cannot be parsed (a truncated copy, a hand edit) with one message naming
the damaged file (:func:`read_bundle_json`, :func:`read_bundle_yaml`), never a traceback.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import yaml

from gastrorad.config.study import StudyConfig
from gastrorad.errors import InputError, Problem

BUNDLE_FORMAT = 1


def _sha(path: Path) -> str:
    from gastrorad.io.hashing import file_hash
    return file_hash(path)


def export_bundle(cfg: StudyConfig, folder: Path | None = None) -> Path:
    """Write the bundle of a finished run (after ``fit``); returns ``bundle.json``'s path."""
    from gastrorad.dl.data import load_sample_table
    from gastrorad.report.versions import software_versions
    out = cfg.output_dir
    folder = Path(folder or out / "bundle")
    fit_path = out / "models" / "fit.json"
    if not fit_path.exists():
        raise InputError(Problem(str(fit_path), "no fitted models: run `gastrorad fit` first"))
    fit = json.loads(fit_path.read_text(encoding="utf-8"))
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "weights").mkdir(parents=True)
    signature = ("none" if not cfg.has_images else "longitudinal" if cfg.longitudinal is not None
                 else cfg.signature.method)
    weights: list[str] = []
    if signature == "none":  # a clinical-only study: no network, no patches
        pass
    elif signature == "longitudinal":  # S3: the first seed's LDLM (and TDLM), whose scores the fusion models use
        meta = json.loads((out / "models" / "longitudinal.json").read_text(encoding="utf-8"))
        weights = []
        for which, paths in meta.items():
            shutil.copy2(paths[0], tmp / "weights" / f"{which}.pt")
            weights.append(f"weights/{which}.pt")
    elif signature == "dl_probability":
        meta = json.loads((out / "models" / "models.json").read_text(encoding="utf-8"))
        weights = []
        for i, ck in enumerate(meta["checkpoints"]):
            name = f"weights/model{i}.pt"
            shutil.copy2(ck, tmp / name)
            weights.append(name)
    else:
        shutil.copy2(out / "models" / "feature_extractor.pt", tmp / "weights" / "feature_extractor.pt")
        weights = ["weights/feature_extractor.pt"]
    shutil.copy2(fit_path, tmp / "fit.json")
    (tmp / "card.json").write_text(json.dumps(model_card(cfg, fit), indent=2, default=_plain))
    for name in ("signatures.json", "harmonize.json"):
        if (out / name).exists():
            shutil.copy2(out / name, tmp / name)
    resolved = cfg.model_dump(mode="json")
    for key in ("data", "output"):
        resolved.pop(key, None)
    if cfg.longitudinal is not None:
        resolved["longitudinal"]["seeds"] = resolved["longitudinal"]["seeds"][:1]
    (tmp / "study.yaml").write_text("# Resolved study file of the locked model (data paths removed).\n"
                                    + yaml.safe_dump(resolved, sort_keys=False))
    channels = {}
    phases = [] if signature == "none" else cfg.preprocess.phases[:1] if cfg.longitudinal is not None \
        else cfg.preprocess.phases
    for phase in phases:
        s = load_sample_table(cfg, phase)
        channels[phase] = {"channels": s.channels, "spatial_dims": s.spatial_dims}
    enc = fit["encoder"]
    used_columns = {c for spec in fit["models"].values() for c in spec["columns"]}
    required = [v for v in enc["variables"] if set(enc["terms"].get(v, [])) & used_columns]
    files = {p.relative_to(tmp).as_posix(): _sha(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    manifest = {
        "gastrorad_bundle": BUNDLE_FORMAT, "study": cfg.name, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "outcome": cfg.outcome.kind, "time_unit": cfg.outcome.time_unit, "phases": list(phases if signature == "none"
                                                                                        else cfg.preprocess.phases),
        "patch_mode": cfg.preprocess.patch.mode, "inputs": channels, "signature": signature,
        "signature_columns": fit["signature_columns"], "clinical_required": required,
        "models": {k: {"kind": v["kind"], "cutoff": v["cutoff"], "columns": v["columns"]} for k, v in
                   fit["models"].items()},
        "nomogram_model": fit.get("nomogram_model"), "weights": weights, "versions": software_versions(),
        "files": files,
    }
    (tmp / "bundle.json").write_text(json.dumps(manifest, indent=2))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder / "bundle.json"


def _plain(v):
    return v.item() if hasattr(v, "item") else str(v)


def _finite(v):
    import math
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def model_card(cfg: StudyConfig, fit: dict) -> dict:
    """What a clinician reads before using the locked model (``card.json`` of the bundle).

    Taken from the finished run: the cohorts and the performance of the bundle's models with
    their CIs (``metrics/metrics.json``), the locked cut-offs, the TRIPOD+AI items the run
    knows, and the training-cohort range of every clinical input and image signature (so a
    served model can flag values outside them instead of extrapolating silently).
    """
    import pandas as pd

    from gastrorad.data.tables import read_table
    from gastrorad.report.tripod import tripod_checklist

    out = cfg.output_dir
    o = cfg.outcome
    metrics_path = out / "metrics" / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.exists() else {}
    tables = metrics.get("tables", {})
    keep = set(fit["models"]) | set(fit.get("signature_columns", []))
    perf = [{k: _finite(r.get(k)) for k in ("cohort", "model", "n", "auc_or_c", "lower", "upper")}
            for r in tables.get("performance", []) if r.get("model") in keep]
    outcome = (f"{o.label} (binary, 1 = outcome of interest)" if o.kind == "binary" else
               f"time to event ({o.time}, {o.event}; {o.time_unit})")
    card = {
        "title": cfg.report.title or cfg.name,
        "intended_use": (f"Research use: estimates "
                         f"{'the probability of ' + o.label if o.kind == 'binary' else 'survival'} for adults "
                         f"with gastric cancer from {', '.join(cfg.preprocess.phases)}-phase CT with a "
                         "tumour region of interest and the clinical variables below, as developed in the study "
                         f"'{cfg.name}'. Not a diagnostic device; apply only to patients like the training cohort."),
        "outcome": outcome,
        "metric": "AUC" if o.kind == "binary" else "Harrell C-index",
        "cohorts": tables.get("cohorts", []),
        "performance": perf,
        "cutoffs": {k: v["cutoff"] for k, v in fit["models"].items()},
        "tripod": [{"item": i, "topic": t, "answer": a} for i, t, a in tripod_checklist(cfg, metrics, fit)],
        "clinical": {}, "signature_ranges": {},
    }
    enc = fit["encoder"]
    used = {c for spec in fit["models"].values() for c in spec["columns"]}
    try:  # training-cohort ranges: the clinical table joined with the run's cohort assignment
        clin = read_table(cfg.clinical_path)
        sigs = pd.read_csv(out / "signatures.csv", dtype={"patient_id": str})
        train_ids = set(sigs.loc[sigs.cohort == "training", "patient_id"])
        train = clin[clin.patient_id.isin(train_ids)]
        sigs = sigs[sigs.cohort == "training"]
    except (InputError, OSError, KeyError, AttributeError):
        train, sigs = None, None
    for v in enc["variables"]:
        if not set(enc["terms"].get(v, [])) & used:
            continue
        entry: dict = {"impute": enc["impute"].get(v)}
        if v in enc["categorical"]:
            groups = enc["groups"].get(v)
            entry["type"] = "categorical"
            entry["levels"] = [x for lv in enc["levels"][v] for x in (groups.get(lv, [lv]) if groups else [lv])]
        else:
            entry["type"] = "numeric"
            if v in cfg.clinical.units:
                entry["unit"] = cfg.clinical.units[v]
            if train is not None and v in train:
                x = pd.to_numeric(train[v], errors="coerce").dropna()
                if len(x):
                    entry["range"] = [float(x.min()), float(x.max())]
        card["clinical"][v] = entry
    if sigs is not None:
        for c in fit.get("signature_columns", []):
            if c in sigs:
                x = pd.to_numeric(sigs[c], errors="coerce").dropna()
                if len(x):
                    card["signature_ranges"][c] = [float(x.min()), float(x.max())]
    return card


def load_bundle(folder: str | Path) -> tuple[dict, StudyConfig]:
    """Read and verify a bundle: every file must match the hash recorded at export."""
    folder = Path(folder)
    path = folder / "bundle.json" if folder.is_dir() else folder
    folder = path.parent
    if not path.exists():
        raise InputError(Problem(str(path), "not a gastrorad bundle (no bundle.json)"))
    manifest = read_bundle_json(path)
    if manifest.get("gastrorad_bundle") != BUNDLE_FORMAT:
        raise InputError(Problem(str(path), f"unsupported bundle format {manifest.get('gastrorad_bundle')}"))
    problems = []
    listed = manifest.get("files") or {}
    # every file predict reads must be in the hash list, inside the bundle: an edited bundle.json
    # cannot point predict at unlisted weights (issue 12, item 3)
    reads = ["study.yaml", "fit.json", *manifest.get("weights", [])]
    reads += [name for name in ("signatures.json", "harmonize.json") if (folder / name).exists()]
    for rel in [*reads, *listed]:
        parts = Path(rel).parts
        if Path(rel).is_absolute() or ".." in parts or not parts:
            problems.append(Problem(str(path), f"refused: bundle file '{rel}' is outside the bundle folder"))
        elif rel not in listed:
            problems.append(Problem(str(folder / rel), "refused: predict would read this file, but it is not in "
                                    "the bundle's SHA-256 list (bundle.json was edited after export?)"))
    if problems:
        raise InputError(problems)
    for rel, digest in listed.items():
        p = folder / rel
        if not p.is_file():
            problems.append(Problem(str(p), "bundle file is missing"))
        elif _sha(p) != digest:
            problems.append(Problem(str(p), "bundle file changed since export (SHA-256 differs)"))
    if problems:
        raise InputError(problems)
    raw = read_bundle_yaml(folder / "study.yaml")
    raw["data"] = {"manifest": "manifest.csv", "clinical": "clinical.csv"}
    cfg = StudyConfig.model_validate({**raw, "base_dir": folder})
    return manifest, cfg


def _damaged(path: Path, why: str) -> InputError:
    return InputError(Problem(str(path), f"the bundle is damaged: {path.name} {why}; export the bundle again"))


def _bundle_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(Problem(str(path), "bundle file is missing")) from None
    except UnicodeDecodeError:
        raise _damaged(path, f"is not valid {what} (not UTF-8 text)") from None


def read_bundle_json(path: str | Path) -> dict:
    """A JSON file of a bundle (bundle.json, fit.json, signatures.json, card.json) as a dict.

    A damaged file (truncated, not text, not a JSON object) is an :class:`InputError` naming it and
    where parsing stopped, e.g. "the bundle is damaged: fit.json is not valid JSON (line 12, column
    5); export the bundle again", never a ``JSONDecodeError`` traceback. ``gastrorad predict`` and
    ``gastrorad serve`` read every bundle JSON file through it.
    """
    path = Path(path)
    text = _bundle_text(path, "JSON")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _damaged(path, f"is not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(data, dict):
        raise _damaged(path, f"holds a {type(data).__name__}, not a JSON object")
    return data


def read_bundle_yaml(path: str | Path) -> dict:
    """The bundle's ``study.yaml`` as a dict; a damaged one is an :class:`InputError` as in
    :func:`read_bundle_json` (line and column where YAML parsing stopped)."""
    path = Path(path)
    text = _bundle_text(path, "YAML")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(exc).splitlines()[0]
        raise _damaged(path, f"is not valid YAML ({where})") from None
    if not isinstance(data, dict):
        raise _damaged(path, f"holds a {type(data).__name__}, not a YAML mapping")
    return data
