"""``gastrorad predict BUNDLE patients.csv``: apply a locked model to new patients.

``patients.csv`` has one row per image instance, in the manifest's columns (``patient_id``,
``image``, ``mask`` or ``bbox``, ``phase``, ...). Any other column is a per-patient
clinical value (constant within a patient); a separate ``--clinical`` table may give them
instead. Nothing is refitted: patches are cut with the bundle's parameters, the bundle's
weights score them, the locked signature, encoder, fusion coefficients and cut-offs turn
them into scores, risk groups and nomogram points, and Grad-CAM overlays are drawn.

Inputs that do not match the bundle are refused with the file, row and column: a missing
phase, a patch whose channel count differs from training, a missing clinical variable,
a clinical level never seen in training. A failed prediction leaves its output folder as it
found it (:func:`keep_as_found`); predictions.csv is written through
:func:`gastrorad.io.csv_safe.download_csv`, so no cell opens as a spreadsheet formula.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gastrorad.bundle.export import load_bundle, read_bundle_json
from gastrorad.data.tables import MANIFEST_OPTIONAL, MANIFEST_REQUIRED, read_table, resolve_reference, sheet_row
from gastrorad.errors import InputError, Problem
from gastrorad.io.atomic import atomic_write_text
from gastrorad.io.csv_safe import download_csv


@dataclass
class PredictResult:
    predictions: pd.DataFrame
    folder: Path
    removed: list[str] = field(default_factory=list)  # outputs of an earlier prediction it replaced


#: What a prediction writes into its folder (besides the content-keyed ``cache/``, which is kept).
PREDICT_OUTPUTS = ("predictions.csv", "patches.csv", "inputs", "explain", "models", "features_*.csv",
                   "dl_scores*.csv", "signatures*.csv", "radiomics_*.csv")
#: Where a running prediction keeps the earlier prediction's outputs, inside its folder.
EARLIER = ".earlier-prediction"


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    else:
        p.unlink()


def clear_earlier_prediction(out: Path) -> list[str]:
    """Remove the outputs of a prediction from ``out`` (cache kept); returns their names.

    Only the names in :data:`PREDICT_OUTPUTS` are touched, never other files of the folder.
    """
    removed = []
    for pattern in PREDICT_OUTPUTS:
        for p in sorted(out.glob(pattern)):
            _remove(p)
            removed.append(p.name)
    return removed


def _move_back(aside: Path, out: Path) -> None:
    for p in aside.iterdir():
        p.rename(out / p.name)
    aside.rmdir()


@contextlib.contextmanager
def keep_as_found(out: Path):
    """Run a prediction into ``out`` so that a failure leaves ``out`` as it found it.

    The outputs of an earlier prediction (:data:`PREDICT_OUTPUTS`) are first moved aside into
    ``out/.earlier-prediction/`` (a rename in the same folder), so the new outputs never mix with
    them; the list of their names is yielded. If the block succeeds they are deleted: the new
    prediction replaces them. If it fails (any exception, Ctrl-C included), everything it created
    in ``out`` is removed except the content-keyed ``cache/``, the earlier outputs are moved back,
    and the folders it created for ``out`` are removed again unless ``cache/`` is in them. A
    prediction killed mid-way leaves the earlier outputs aside; the next prediction into ``out``
    first drops the killed one's outputs and moves them back, then starts as above.
    """
    out = Path(out)
    created = [p for p in (out, *out.parents) if not p.exists()]  # deepest first
    out.mkdir(parents=True, exist_ok=True)
    aside = out / EARLIER
    if aside.is_dir():  # a prediction killed mid-way: undo it first
        clear_earlier_prediction(out)
        _move_back(aside, out)
    earlier = []
    for pattern in PREDICT_OUTPUTS:
        for p in sorted(out.glob(pattern)):
            aside.mkdir(exist_ok=True)
            p.rename(aside / p.name)
            earlier.append(p.name)
    found = {p.name for p in out.iterdir()}
    try:
        yield earlier
    except BaseException:
        for p in out.iterdir():
            if p.name not in found and p.name != "cache":
                _remove(p)
        if aside.is_dir():
            _move_back(aside, out)
        for p in created:
            if any(p.iterdir()):
                break
            p.rmdir()
        raise
    if aside.is_dir():
        shutil.rmtree(aside)


def _predict_clinical_only(fit: dict, clin: pd.DataFrame, out: Path, source: str) -> pd.DataFrame:
    """A clinical-only bundle: the locked models on the clinical table, no image stage."""
    rows = [sheet_row(i) for i in clin.index]
    preds = score_models(fit, clin.reset_index(drop=True).astype({"patient_id": str}), None, source, rows)
    atomic_write_text(out / "predictions.csv", download_csv(preds))
    return preds


def _split_inputs(patients: Path, clinical: Path | None, manifest_info: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    table = read_table(patients)
    if manifest_info.get("signature") == "none":  # clinical-only: the patients file is the clinical table
        clinical = clinical or patients
        table = read_table(clinical)
        if "patient_id" not in table.columns:
            raise InputError(Problem(str(clinical), "required column is missing", column="patient_id"))
        missing = [v for v in manifest_info["clinical_required"] if v not in table.columns]
        if missing:
            raise InputError([Problem(str(clinical), "clinical variable used by the locked model is missing",
                                      column=v) for v in missing])
        return pd.DataFrame(columns=list(MANIFEST_REQUIRED)), table
    manifest_cols = set(MANIFEST_REQUIRED) | set(MANIFEST_OPTIONAL) | {"cohort"}
    problems = [Problem(str(patients), "required column is missing", column=c) for c in MANIFEST_REQUIRED
                if c not in table.columns]
    if problems:
        raise InputError(problems)
    manifest = table[[c for c in table.columns if c in manifest_cols]].copy()
    extra = [c for c in table.columns if c not in manifest_cols]
    # paths resolve against the patients file's folder, as a manifest's do
    base = patients.resolve().parent
    for col in ("image", "mask"):
        if col in manifest:
            manifest[col] = [_absolute(base, v) for v in manifest[col]]
    if clinical is not None:
        clin = read_table(clinical)
        if "patient_id" not in clin.columns:
            raise InputError(Problem(str(clinical), "required column is missing", column="patient_id"))
        clin = clin[clin.patient_id.isin(set(table.patient_id.astype(str)))]  # only the patients to score
        source = str(clinical)
    else:
        rows, first = [], []
        for pid, g in table.groupby("patient_id", sort=False):
            first.append(g.index[0])  # the patient's first row in the patients file
            row = {"patient_id": pid}
            for c in extra:
                vals = pd.unique(g[c].dropna())
                if len(vals) > 1:
                    raise InputError(Problem(str(patients), f"clinical column differs between rows of patient {pid}",
                                             row=sheet_row(g.index[1]), column=c))
                row[c] = vals[0] if len(vals) else np.nan
            rows.append(row)
        clin = pd.DataFrame(rows, columns=["patient_id", *extra], index=first)
        source = str(patients)
    missing = [v for v in manifest_info["clinical_required"] if v not in clin.columns]
    if missing:
        raise InputError([Problem(source, "clinical variable used by the locked model is missing", column=v)
                          for v in missing])
    return manifest, clin


@contextlib.contextmanager
def _in_user_files(inputs: Path, patients: str, clinical: str, clin_rows: list[int]):
    """Re-address problems found in predict's working copies (``<out>/inputs/*.csv``) to the
    user's patients and clinical files: same rows for the manifest, mapped rows for the clinical table."""
    try:
        yield
    except InputError as exc:
        manifest, clin = str(inputs / "manifest.csv"), str(inputs / "clinical.csv")
        fixed = []
        for p in exc.problems:
            if p.file == manifest:
                p = Problem(patients, p.reason, row=p.row, column=p.column, severity=p.severity)
            elif p.file == clin:
                row = clin_rows[p.row - 2] if p.row and 0 <= p.row - 2 < len(clin_rows) else None
                p = Problem(clinical, p.reason, row=row, column=p.column, severity=p.severity)
            fixed.append(p)
        raise InputError(fixed) from exc


def _absolute(base: Path, ref) -> str:
    if ref is None or (isinstance(ref, float) and np.isnan(ref)) or str(ref).strip() == "":
        return ""
    return resolve_reference(base, str(ref).strip())  # URLs (s3://, file://) are kept as written


def _check_phases(manifest: pd.DataFrame, info: dict, source: str) -> None:
    phases = manifest["phase"].fillna("venous").replace("", "venous") if "phase" in manifest else \
        pd.Series("venous", index=manifest.index)
    problems = []
    for pid, g in manifest.assign(phase=phases).groupby("patient_id", sort=False):
        have = set(g.phase)
        for ph in info["phases"]:
            if ph not in have:
                problems.append(Problem(source, f"patient {pid} has no '{ph}' image; the locked model needs phases "
                                        f"{info['phases']}", row=sheet_row(g.index[0]), column="phase"))
    if problems:
        raise InputError(problems)


def _nomogram_points(spec: dict, design: pd.DataFrame, grouped: pd.DataFrame) -> pd.DataFrame:
    nomo = spec["nomogram"]
    out = pd.DataFrame(index=design.index)
    for a in nomo["axes"]:
        xb_min = min(a["xbeta"])
        if a["categorical"]:
            contrib = grouped[a["name"]].map(lambda v: a["coef"].get(str(v), 0.0)).astype(float)
        else:
            contrib = design[a["name"]].astype(float) * a["coef"]
        out[f"points_{a['name']}"] = (contrib - xb_min) * nomo["sc"]
    out["points_total"] = out.sum(axis=1)
    return out


def score_models(fit: dict, clin: pd.DataFrame, sig: pd.DataFrame | None, source: str,
                 clin_rows: list[int] | None = None, models: list[str] | None = None) -> pd.DataFrame:
    """The locked models' scores, risk groups, t-year survival and nomogram points.

    ``clin``: one row per patient (``patient_id`` and the clinical values, as read from the
    user's table); ``sig``: the image signature per patient (``patient_id`` and the
    signature columns), or None when only models without an image signature are wanted
    (the nomogram calculator of ``gastrorad serve``). ``models`` limits the models scored.
    ``clin_rows`` maps problems back to the rows of ``source``. Used by :func:`predict_patients`,
    so the calculator gives exactly the numbers ``gastrorad predict`` gives.
    """
    from gastrorad.models.encoding import ClinicalEncoder

    enc = ClinicalEncoder.from_dict(fit["encoder"])
    used = {c for spec in fit["models"].values() for c in spec["columns"]}
    absent = [v for v in enc.variables if v not in clin.columns]
    if absent:  # candidates no locked model uses need not be given: any valid value, it multiplies nothing
        if any(set(enc.terms_.get(v, [])) & used for v in absent):
            raise InputError([Problem(source, "clinical variable used by the locked model is missing", column=v)
                              for v in absent if set(enc.terms_.get(v, [])) & used])
        clin = clin.assign(**{v: enc.impute_.get(v, (enc.levels_.get(v) or [0])[0]) for v in absent})
    if sig is None:
        sig = pd.DataFrame({"patient_id": clin.patient_id.astype(str).to_numpy()})
    try:
        X = enc.transform(clin.reset_index(drop=True), source)
    except InputError as exc:  # report the rows of the file as given, not of the scored subset
        origin = list(clin_rows) if clin_rows is not None else [sheet_row(i) for i in range(len(clin))]
        raise InputError([Problem(p.file, p.reason, row=origin[p.row - 2] if p.row else None, column=p.column)
                          for p in exc.problems]) from exc
    X.index = clin.index[X.index]  # back to the clinical rows (a "drop" missing policy may leave some out)
    design = clin.loc[X.index, ["patient_id"]].join(X).merge(sig, on="patient_id", how="left").set_index("patient_id")
    grouped = enc._grouped(clin.set_index("patient_id"))
    for var in enc.categorical:
        grouped[var] = grouped[var].fillna(enc.impute_[var])
    rows = []
    for name, spec in fit["models"].items():
        if models is not None and name not in models:
            continue
        cols = spec["columns"]
        lp = spec["intercept"] + design[cols].to_numpy(float) @ np.asarray(spec["coef"], float)
        score = 1 / (1 + np.exp(-lp)) if spec["kind"] == "logistic" else lp
        d = pd.DataFrame({"patient_id": design.index, "model": name, "score": score, "lp": lp,
                          "cutoff": spec["cutoff"],
                          "risk_group": np.where(score >= spec["cutoff"], "high", "low")})
        d.loc[~np.isfinite(score), "risk_group"] = ""
        for t, s0 in spec.get("baseline_survival", {}).items():
            d[f"survival_at_{float(t):g}"] = s0 ** np.exp(lp)
        if "nomogram" in spec:
            pts = _nomogram_points(spec, design, grouped.loc[design.index])
            d = d.join(pts.reset_index(drop=True))
        rows.append(d)
    return pd.concat(rows, ignore_index=True)


def predict_patients(bundle: str | Path, patients: str | Path, out: str | Path, *, clinical: str | Path | None = None,
                     gradcam: bool = True, workers: int = 1, scheduler: str | None = None, progress=None,
                     log=None) -> PredictResult:
    """Score new patients with a locked bundle; writes ``<out>/predictions.csv`` (and Grad-CAM).

    Patches are cut on ``workers`` Dask workers (1: in this process) or on the Dask scheduler at
    ``scheduler``; the training study's own ``compute:`` section is not used.

    A failed prediction leaves ``out`` as it found it, an earlier prediction's outputs included
    (only the content-keyed ``cache/`` may stay): the work is done in ``out`` with the earlier
    outputs moved aside, and on failure its own outputs are removed and the earlier ones moved
    back (:func:`keep_as_found`). A successful one replaces the earlier outputs (``log`` is told
    which; :attr:`PredictResult.removed` lists them), so predictions.csv and the working copies
    beside it always belong to the same patients.
    """
    info, cfg = load_bundle(bundle)
    bundle = Path(bundle)
    folder = bundle if bundle.is_dir() else bundle.parent
    fit = read_bundle_json(folder / "fit.json")
    if not fit.get("models"):
        skipped = fit.get("selection", {}).get("skipped_models", {})
        why = "; ".join(f"{m}: {r}" for m, r in skipped.items()) or "none was fitted"
        raise InputError(Problem(str(folder / "fit.json"), "this bundle holds no fitted model, so nothing can be "
                                 f"predicted ({why}); the training cohort selected no clinical term and no image "
                                 "feature: see the run's report"))
    # relative paths are the user's, against the working directory (the resolved study's base is the bundle)
    patients, out = Path(patients).resolve(), Path(out).resolve()
    clinical = Path(clinical).resolve() if clinical else None
    manifest, clin = _split_inputs(patients, Path(clinical) if clinical else None, info)
    with keep_as_found(out) as earlier:
        if info["signature"] == "none":  # a clinical-only model: the clinical table is all it reads
            preds = _predict_clinical_only(fit, clin, out, str(clinical or patients))
        else:
            preds = _predict_images(info, cfg, fit, folder, manifest, clin, patients, clinical, out, gradcam=gradcam,
                                    workers=workers, scheduler=scheduler, progress=progress, log=log)
    if earlier and log:
        log(f"replaced the earlier prediction's outputs in {out}: {', '.join(earlier)}")
    return PredictResult(preds, out, earlier)


def _predict_images(info: dict, cfg, fit: dict, folder: Path, manifest: pd.DataFrame, clin: pd.DataFrame,
                    patients: Path, clinical: Path | None, out: Path, *, gradcam: bool, workers: int,
                    scheduler: str | None, progress, log=None) -> pd.DataFrame:
    """The image stage of :func:`predict_patients`: patches, the bundle's network, the locked
    signature and models; writes into ``out`` and returns the predictions."""
    from gastrorad.config.study import CohortConfig, ComputeConfig
    from gastrorad.dl.train import load_checkpoint, score_study
    from gastrorad.preprocess import preprocess_study

    clin_rows = [sheet_row(i) for i in clin.index]  # spreadsheet rows of the clinical source
    _check_phases(manifest, info, str(patients))
    lasso = info["signature"] not in ("longitudinal", "dl_probability")  # deep features and LASSO coefficients
    sinfo = read_bundle_json(folder / "signatures.json") if lasso else None  # read (and checked) before any work
    harm = read_bundle_json(folder / "harmonize.json") if lasso and (folder / "harmonize.json").exists() else {}
    # the working study: the bundle's parameters on the new patients, as one "prospective" cohort
    inputs = out / "inputs"
    clin = clin.copy()
    if "center" not in clin.columns:
        clin["center"] = "new"
    clin["cohort"] = "prospective"  # new patients: a cohort name the study schema knows
    o = cfg.outcome
    for col in ([o.label] if o.kind == "binary" else [o.time, o.event]):
        if col not in clin.columns:
            clin[col] = np.nan
    known = set(clin.patient_id.astype(str))
    orphans = [i for i, pid in enumerate(manifest.patient_id.astype(str)) if pid not in known]
    if orphans:
        raise InputError([Problem(str(clinical or patients), f"patient {manifest.patient_id.iloc[i]} has images but "
                                  "no clinical row", row=sheet_row(i), column="patient_id") for i in orphans[:20]])
    # problems found in the working copies are reported against the user's own files and rows
    with _in_user_files(inputs, str(patients), str(clinical or patients), clin_rows):
        atomic_write_text(inputs / "manifest.csv", manifest.to_csv(index=False))
        atomic_write_text(inputs / "clinical.csv", clin.to_csv(index=False))
        cfg.data.manifest, cfg.data.clinical, cfg.data.truth = inputs / "manifest.csv", inputs / "clinical.csv", None
        cfg.cohorts = CohortConfig(column="cohort", require_training=False)
        cfg.output = out
        cfg.preprocess.workers = workers
        cfg.compute = ComputeConfig(scheduler=scheduler or "local", workers=workers)
        cfg.preprocess.cache_dir = out / "cache" / "patches"
        # URL images: this site's storage (endpoint, credentials from the environment), not the training site's
        cfg.data.remote_cache, cfg.data.storage_options = out / "cache" / "remote", {}
        pre = preprocess_study(cfg, validate=False, progress=progress)
        if pre.problems:
            raise InputError(pre.problems)
        from gastrorad.dl.data import load_sample_table
        for phase in info["phases"]:
            s = load_sample_table(cfg, phase)
            want = info["inputs"][phase]
            if (s.channels, s.spatial_dims) != (want["channels"], want["spatial_dims"]):
                raise InputError(Problem(str(patients), f"phase '{phase}': patches have {s.channels} channel(s) in "
                                         f"{s.spatial_dims}D, the locked model was trained on {want['channels']} in "
                                         f"{want['spatial_dims']}D", column="phase"))
        weights = [folder / w for w in info["weights"]]
        if info["signature"] == "longitudinal":  # S3: LDLM/TDLM with BS/1F/2F, RECIST and TB-delta
            from gastrorad.dl.longitudinal.train import score_longitudinal
            from gastrorad.models.pipeline import _longitudinal_signatures
            atomic_write_text(out / "models" / "longitudinal.json",
                              json.dumps({Path(w).stem: [str(w)] for w in weights}, indent=2))
            score_longitudinal(cfg)
            sig, _ = _longitudinal_signatures(cfg, clin, clin[["patient_id", "cohort"]])
            sig = sig.drop(columns=["cohort"])
        elif info["signature"] == "dl_probability":
            sig = score_study(cfg, checkpoints=weights)[["patient_id", "score"]].rename(columns={"score": "dl_score"})
        else:
            from gastrorad.dl.features import extract_features
            net = load_checkpoint(weights[0])
            sig = None
            for phase, ph in sinfo["phases"].items():
                f = extract_features(cfg, net, phase=phase)
                if phase in harm.get("deep", {}):  # the study's ComBat: stored centres, or a new one adapted
                    from gastrorad.models.harmonize import harmonize_new_patients
                    h = cfg.harmonize
                    f = harmonize_new_patients(f, clin, harm["deep"][phase], new_centre_min=h.new_centre_min,
                                               unseen=h.unseen_centres, label=f"deep {phase}", log=log)
                col = f"rad_{phase}"
                lp = ph["intercept"] + sum(f[c].to_numpy(float) * b for c, b in ph["coefficients"].items())
                t = pd.DataFrame({"patient_id": f.patient_id.astype(str), col: lp})
                sig = t if sig is None else sig.merge(t, on="patient_id", how="outer")
        handcrafted = sorted({c for spec in fit["models"].values() for c in spec["columns"] if c.startswith("hcr_")})
        if handcrafted:
            raise InputError(Problem(str(folder / "fit.json"), f"a fusion model uses the handcrafted radiomics signature "
                                     f"({', '.join(handcrafted)}), which predict does not compute for new patients yet; "
                                     "lock a model without it"))
        preds = score_models(fit, clin, sig, str(clinical or patients), clin_rows)
        sig_out = sig.rename(columns={"dl_score": "DL signature"})
        preds = preds.merge(sig_out, on="patient_id", how="left")
        atomic_write_text(out / "predictions.csv", download_csv(preds))
        if gradcam and info["signature"] == "longitudinal":
            from gastrorad.dl.longitudinal.explain import explain_longitudinal
            explain_longitudinal(cfg, limit=10 ** 6)
        elif gradcam and info["signature"] == "dl_probability":
            from gastrorad.dl.explain import explain_study
            explain_study(cfg, checkpoint=weights[0], limit=10 ** 6)
    return preds
