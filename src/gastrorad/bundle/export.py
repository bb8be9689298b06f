"""The model bundle: everything needed to score a new patient, locked.

``<output>/bundle/``::

    bundle.json       what the bundle expects (phases, patch mode, channels, clinical variables),
                      the models and their cut-offs, software versions, and the SHA-256 of every file
    study.yaml        the resolved study file (preprocessing, model, signature and fusion parameters)
    fit.json          clinical encoding (levels, reference, imputation values), fusion coefficients,
                      cut-offs, Cox baseline survival, nomogram axes
    signatures.json   how the image signature is made (LASSO coefficients for deep features)
    weights/*.pt      the deep model(s) or the feature extractor

``load_bundle`` refuses a bundle whose files do not match their recorded hashes.
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
    fit = json.loads(fit_path.read_text())
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "weights").mkdir(parents=True)
    signature = "longitudinal" if cfg.longitudinal is not None else cfg.signature.method
    if signature == "longitudinal":  # S3: the first seed's LDLM (and TDLM), whose scores the fusion models use
        meta = json.loads((out / "models" / "longitudinal.json").read_text())
        weights = []
        for which, paths in meta.items():
            shutil.copy2(paths[0], tmp / "weights" / f"{which}.pt")
            weights.append(f"weights/{which}.pt")
    elif signature == "dl_probability":
        meta = json.loads((out / "models" / "models.json").read_text())
        weights = []
        for i, ck in enumerate(meta["checkpoints"]):
            name = f"weights/model{i}.pt"
            shutil.copy2(ck, tmp / name)
            weights.append(name)
    else:
        shutil.copy2(out / "models" / "feature_extractor.pt", tmp / "weights" / "feature_extractor.pt")
        weights = ["weights/feature_extractor.pt"]
    shutil.copy2(fit_path, tmp / "fit.json")
    if (out / "signatures.json").exists():
        shutil.copy2(out / "signatures.json", tmp / "signatures.json")
    resolved = cfg.model_dump(mode="json")
    for key in ("data", "output"):
        resolved.pop(key, None)
    if cfg.longitudinal is not None:
        resolved["longitudinal"]["seeds"] = resolved["longitudinal"]["seeds"][:1]
    (tmp / "study.yaml").write_text("# Resolved study file of the locked model (data paths removed).\n"
                                    + yaml.safe_dump(resolved, sort_keys=False))
    channels = {}
    for phase in cfg.preprocess.phases[:1] if cfg.longitudinal is not None else cfg.preprocess.phases:
        s = load_sample_table(cfg, phase)
        channels[phase] = {"channels": s.channels, "spatial_dims": s.spatial_dims}
    enc = fit["encoder"]
    used_columns = {c for spec in fit["models"].values() for c in spec["columns"]}
    required = [v for v in enc["variables"] if set(enc["terms"].get(v, [])) & used_columns]
    files = {p.relative_to(tmp).as_posix(): _sha(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    manifest = {
        "gastrorad_bundle": BUNDLE_FORMAT, "study": cfg.name, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "outcome": cfg.outcome.kind, "time_unit": cfg.outcome.time_unit, "phases": list(cfg.preprocess.phases),
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


def load_bundle(folder: str | Path) -> tuple[dict, StudyConfig]:
    """Read and verify a bundle: every file must match the hash recorded at export."""
    folder = Path(folder)
    path = folder / "bundle.json" if folder.is_dir() else folder
    folder = path.parent
    if not path.exists():
        raise InputError(Problem(str(path), "not a gastrorad bundle (no bundle.json)"))
    manifest = json.loads(path.read_text())
    if manifest.get("gastrorad_bundle") != BUNDLE_FORMAT:
        raise InputError(Problem(str(path), f"unsupported bundle format {manifest.get('gastrorad_bundle')}"))
    problems = []
    listed = manifest.get("files") or {}
    # every file predict reads must be in the hash list, inside the bundle: an edited bundle.json
    # cannot point predict at unlisted weights (issue 12, item 3)
    reads = ["study.yaml", "fit.json", *manifest.get("weights", [])]
    if (folder / "signatures.json").exists():
        reads.append("signatures.json")
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
    raw = yaml.safe_load((folder / "study.yaml").read_text())
    raw["data"] = {"manifest": "manifest.csv", "clinical": "clinical.csv"}
    cfg = StudyConfig.model_validate({**raw, "base_dir": folder})
    return manifest, cfg
