"""``gastrorad validate``: check every input of a study and summarise it.

All problems are collected (file, row, column, reason) instead of stopping at the first.
Checks: missing or unknown columns; missing, unreadable or inconsistent images (DICOM
series geometry); masks that are missing, off the image grid or empty; boxes outside
the image; non-binary labels; negative times; event codes other than 0/1; missing
outcomes; duplicated patients or image rows; a patient in two cohorts; patients with
images but no clinical row (or the reverse); a configured phase missing for a patient; a
categorical level of a validation cohort that the training cohort never saw (cohorts are
assigned here exactly as ``run`` assigns them, so the training rows are known).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from gastrorad.config.study import StudyConfig
from gastrorad.data.cohorts import assign_cohorts
from gastrorad.data.tables import load_clinical, load_manifest, remote_cache, sheet_row
from gastrorad.errors import InputError, Problem
from gastrorad.io.geometry import Geometry, geometry_mismatch
from gastrorad.io.images import is_image_file, read_image, read_image_geometry, split_reference
from gastrorad.io.masks import read_mask
from gastrorad.io.remote import RemoteCache, as_written


@dataclass
class ValidationReport:
    """Outcome of :func:`validate_study`: problems, the loaded tables and summary tables."""

    problems: list[Problem] = field(default_factory=list)
    manifest: pd.DataFrame | None = None
    clinical: pd.DataFrame | None = None
    summary: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_if_errors(self) -> None:
        if self.errors:
            raise InputError(self.errors)


def parse_bbox(text: str) -> tuple[int, int, int, int, int, int]:
    """Parse ``'x0 y0 z0 x1 y1 z1'`` (voxel indices of the image file, inclusive; commas allowed)."""
    parts = str(text).replace(",", " ").split()
    if len(parts) != 6:
        raise ValueError(f"bbox '{text}' needs 6 integers 'x0 y0 z0 x1 y1 z1'")
    try:
        vals = [int(round(float(p))) for p in parts]
    except ValueError as exc:
        raise ValueError(f"bbox '{text}' is not numeric") from exc
    x0, y0, z0, x1, y1, z1 = vals
    if x1 < x0 or y1 < y0 or z1 < z0:
        raise ValueError(f"bbox '{text}' has a corner before its origin (x1 < x0, y1 < y0 or z1 < z0)")
    return x0, y0, z0, x1, y1, z1


def validate_study(cfg: StudyConfig, *, check_images: bool = True, workers: int = 4) -> ValidationReport:
    """Validate the study's tables (and, by default, its images and masks)."""
    report = ValidationReport()
    P = report.problems
    mpath, cpath = str(cfg.manifest_path), str(cfg.clinical_path)
    try:
        clinical, probs = load_clinical(cfg.clinical_path)
        P += probs
    except InputError as exc:
        P += exc.problems
        clinical = None
    manifest = None
    try:
        if cfg.has_images:  # a clinical-only study has no manifest
            manifest, probs = load_manifest(cfg.manifest_path, cfg.manifest_path.parent)
            P += probs
    except InputError as exc:
        P += exc.problems
    report.manifest, report.clinical = manifest, clinical
    if clinical is None or any(p.reason == "required column is missing" for p in P):
        return report

    if clinical.empty:
        P.append(Problem(cpath, "the clinical table has no patient row"))
        return report
    P += _check_columns(clinical, cfg, cpath)
    P += _check_harmonize(clinical, cfg, cpath)
    P += _check_outcome(clinical, cfg, cpath)
    cohorts, probs = assign_cohorts(clinical, cfg, cpath)
    P += probs
    clinical = clinical.assign(cohort=clinical["patient_id"].map(cohorts.groupby(level=0).first()))
    report.clinical = clinical
    P += _check_training_outcome(clinical, cfg, cpath)
    P += _check_unseen_levels(clinical, cfg, cpath)
    P += _check_events_per_variable(clinical, cfg, cpath)
    P += _check_lesion_rows(clinical, manifest, cfg, cpath, mpath)

    if manifest is not None and "image_path" in manifest.columns:
        P += _check_manifest_rows(manifest, clinical, cfg, mpath)
        if check_images:
            extents: list[float] = []
            P += _check_images(manifest, mpath, workers, remote_cache(cfg), extents)
            P += _check_roi_sizes(extents, cfg, mpath)
    report.summary = summarise(clinical, manifest, cfg)
    return report


def _check_columns(clinical: pd.DataFrame, cfg: StudyConfig, source: str) -> list[Problem]:
    problems = []
    named = list(cfg.clinical.variables) + list(cfg.clinical.categorical) + cfg.outcome.columns
    for col in dict.fromkeys(named):
        if col not in clinical.columns:
            problems.append(Problem(source, "unknown column: named by the study file but not in the table", column=col))
    for col in cfg.clinical.categorical:
        if cfg.clinical.variables and col not in cfg.clinical.variables:
            problems.append(Problem(source, "categorical variable is not listed in clinical.variables", column=col))
    continuous = [v for v in cfg.clinical.variables if v in clinical.columns and v not in cfg.clinical.categorical
                  and v not in cfg.clinical.ordinal]
    for col in continuous:  # text in a continuous column would only fail later, inside a model fit
        raw = clinical[col]
        num = pd.to_numeric(raw, errors="coerce")
        for i in np.nonzero((raw.notna() & ~np.isfinite(num.astype(float))).to_numpy())[0]:
            problems.append(Problem(source, f"'{raw.iloc[i]}' is not a number: {col} is a continuous variable (list "
                                    "it under clinical.categorical if it is not; leave unknown values empty)",
                                    row=sheet_row(i), column=col))
    return problems


def _check_harmonize(clinical: pd.DataFrame, cfg: StudyConfig, source: str) -> list[Problem]:
    """ComBat (``harmonize.method: combat``) needs every patient's centre and the covariates it keeps:
    said here, not after the image stages."""
    h = cfg.harmonize
    if not h.enabled or not cfg.has_images:
        return []
    problems = [Problem(source, "unknown column: named by harmonize.covariates but not in the table", column=col)
                for col in h.covariates if col not in clinical.columns]
    if "center" not in clinical.columns:
        problems.append(Problem(source, "harmonize.method: combat needs each patient's centre: add a 'center' column "
                                "(or set harmonize.method: none)", column="center"))
    else:
        for i in np.nonzero(clinical["center"].isna().to_numpy())[0][:20]:
            problems.append(Problem(source, "no centre: harmonize.method: combat needs each patient's centre",
                                    row=sheet_row(i), column="center"))
    return problems


def _check_outcome(clinical: pd.DataFrame, cfg: StudyConfig, source: str) -> list[Problem]:
    problems = []
    out = cfg.outcome
    def each_bad(col, bad_mask, reason):
        for i in np.nonzero(bad_mask)[0]:
            problems.append(Problem(source, reason.format(v=clinical[col].iloc[i]), row=sheet_row(i), column=col))
    pairs = [(out.time, out.event)] if out.kind == "survival" else []
    pairs += [(e.time, e.event) for e in out.extra_survival]
    if out.kind == "binary" and out.label in clinical.columns:
        raw = clinical[out.label]
        num = pd.to_numeric(raw, errors="coerce")
        each_bad(out.label, raw.isna().to_numpy(), "missing outcome")
        each_bad(out.label, (raw.notna() & ~num.isin([0, 1])).to_numpy(), "non-binary label '{v}' (expected 0 or 1)")
        if num.isin([0, 1]).all() and num.nunique() < 2:
            problems.append(Problem(source, "the label takes a single value; a binary outcome needs both 0 and 1",
                                    column=out.label))
    for tcol, ecol in pairs:
        if tcol in clinical.columns:
            raw = clinical[tcol]
            num = pd.to_numeric(raw, errors="coerce")
            each_bad(tcol, raw.isna().to_numpy(), "missing survival time")
            each_bad(tcol, (raw.notna() & num.isna()).to_numpy(), "survival time '{v}' is not a number")
            each_bad(tcol, (num < 0).to_numpy(), "negative survival time {v}")
        if ecol in clinical.columns:
            raw = clinical[ecol]
            num = pd.to_numeric(raw, errors="coerce")
            each_bad(ecol, raw.isna().to_numpy(), "missing event indicator")
            each_bad(ecol, (raw.notna() & ~num.isin([0, 1])).to_numpy(), "event '{v}' is not 0 (censored) or 1 (event)")
    return problems


def _check_training_outcome(clinical: pd.DataFrame, cfg: StudyConfig, source: str) -> list[Problem]:
    """Models are fitted on the training cohort: it needs both classes (binary) or events (survival)."""
    out = cfg.outcome
    train = clinical[clinical["cohort"] == "training"]
    if train.empty:
        return []
    if out.kind == "binary" and out.label in train.columns:
        y = pd.to_numeric(train[out.label], errors="coerce")
        pos, neg = int((y == 1).sum()), int((y == 0).sum())
        if min(pos, neg) == 0:
            return [Problem(source, f"the training cohort has {pos} positive and {neg} negative patients: a model "
                                    "needs both classes to learn from (check the label column or the cohort split)",
                            column=out.label)]
    if out.kind == "survival" and out.event in train.columns:
        ev = int((pd.to_numeric(train[out.event], errors="coerce") == 1).sum())
        if ev == 0:
            return [Problem(source, f"the training cohort ({len(train)} patients) has no event: a Cox model needs "
                                    "events to learn from", column=out.event)]
    return []


def _check_unseen_levels(clinical: pd.DataFrame, cfg: StudyConfig, source: str) -> list[Problem]:
    """A categorical level (after ``clinical.groups``) that a row of another cohort has and no
    training row has: the encoder, fitted on training, has no column for it, so ``run`` would
    stop at ``fit`` after every image stage. Missing values are imputed or dropped, never a level."""
    from gastrorad.models.encoding import ClinicalEncoder

    c = cfg.clinical
    variables = [v for v in c.variables if v in c.categorical and v in clinical.columns]
    train = (clinical["cohort"] == "training").to_numpy()
    if not variables or not train.any():
        return []
    grouped = ClinicalEncoder(variables, categorical=variables, groups=c.groups)._grouped(clinical[variables])
    problems = []
    for var in variables:
        col = grouped[var]
        seen = set(col[train].dropna())
        unseen = (col.notna() & ~col.isin(seen) & clinical["cohort"].notna()).to_numpy() & ~train
        levels = sorted(seen, key=str)
        if not levels:  # no training value at all: the encoder's own error says so at fit
            continue
        shown = ", ".join(f"'{lv}'" for lv in levels)
        into = levels[0]
        members = [*c.groups.get(var, {}).get(into, [into])]
        first: dict = {}  # one problem per unseen level: its first row, and how many rows have it
        for i in np.flatnonzero(unseen):
            first.setdefault(clinical[var].iloc[i], []).append(i)
        for raw, rows in first.items():
            i, level = rows[0], col.iloc[rows[0]]
            named = f"'{raw}'" + (f" (grouped as '{level}')" if level != raw else "")
            cohorts = ", ".join(sorted({str(clinical["cohort"].iloc[r]) for r in rows}))
            where = f"{cohorts} cohort{'s' * (',' in cohorts)}"
            if len(rows) > 1:
                where += f"; {len(rows) - 1} more row(s) have it"
            example = f"{var}: {{'{into}': [{', '.join(repr(str(m)) for m in [*members, raw])}]}}"
            problems.append(Problem(source, f"level {named} ({where}): the training cohort never saw it (it has "
                                    f"{shown}), so the model fitted on training has no coefficient for it and run "
                                    "would stop at fit; merge it into a level training has with clinical.groups "
                                    f"(e.g. {example}), or recode it in the table", row=sheet_row(i), column=var))
    return problems


#: Events per candidate variable below which a warning is given (Peduzzi et al. 1996's rule of ten).
MIN_EVENTS_PER_VARIABLE = 10


def _check_events_per_variable(clinical: pd.DataFrame, cfg: StudyConfig, source: str) -> list[Problem]:
    """Too few events (the rarer class, or deaths) per candidate variable of the largest fusion
    model on training: a warning, since its fit will overfit or separate."""
    out = cfg.outcome
    train = clinical[clinical["cohort"] == "training"]
    col = out.label if out.kind == "binary" else out.event
    if train.empty or col not in train.columns:
        return []
    y = pd.to_numeric(train[col], errors="coerce")
    events = int(min((y == 1).sum(), (y == 0).sum())) if out.kind == "binary" else int((y == 1).sum())
    n_sig = len(cfg.preprocess.phases) if cfg.longitudinal is None and cfg.data.manifest else 0
    worst, k = None, 0
    for name, ingredients in cfg.fusion.models.items():
        n = sum(len(cfg.clinical.variables) if i == "clinical" else n_sig if i == "signature" else 1
                for i in ingredients)
        if n > k:
            worst, k = name, n
    if not k or events >= MIN_EVENTS_PER_VARIABLE * k:
        return []
    what = "patients in the rarer outcome class" if out.kind == "binary" else "events"
    return [Problem(source, f"{events} {what} in training for up to {k} candidate variables of model '{worst}' "
                            f"({events / k:.1f} per variable; at least {MIN_EVENTS_PER_VARIABLE} is the usual rule): "
                            "expect overfitting or separation (fits that warn and coefficients that run off)"
                            + ("; use fewer clinical variables or a screen (clinical.selection)"
                               if "clinical" in cfg.fusion.models[worst] else ""),
                    column=col, severity="warning")]


_PATIENT_WORDS = ("patient", "subject", "case", "person", "mrn")


def _check_lesion_rows(clinical: pd.DataFrame, manifest: pd.DataFrame | None, cfg: StudyConfig, cpath: str,
                       mpath: str) -> list[Problem]:
    """Lesion-level rows without ``data.patient_column``: a clinical column that looks like a patient
    ID and repeats (several rows per patient), or several lesions of one patient in the manifest of a
    study that reads one ROI per patient. Either way, cohorts could split a patient."""
    problems = []
    if cfg.data.patient_column is None:
        for col in clinical.columns:
            if col in ("patient_id", "row", "cohort") or not any(w in col.lower() for w in _PATIENT_WORDS):
                continue
            counts = clinical[col].value_counts()
            if len(counts) and counts.max() > 1 and clinical["patient_id"].is_unique:
                problems.append(Problem(cpath, f"column '{col}' repeats ({int((counts > 1).sum())} values on "
                                        "several rows, e.g. '" + str(counts.index[0]) + f"' on {int(counts.iloc[0])}"
                                        "): if each row is a lesion and this names its patient, set "
                                        f"data.patient_column: {col}, so cohorts, folds and resamples keep a patient "
                                        "together", column=col, severity="warning"))
    if manifest is not None and cfg.longitudinal is None and "lesion_id" in manifest.columns:
        m = manifest[(manifest.get("reader", "") == "")] if "reader" in manifest.columns else manifest
        n = m.groupby(["patient_id", "phase", "timepoint"]).lesion_id.nunique()
        many = n[n > 1]
        if len(many):
            pid = many.index[0][0]
            problems.append(Problem(mpath, f"{many.index.get_level_values(0).nunique()} patients have several lesions "
                                    f"(e.g. '{pid}': {int(many.iloc[0])}), but this study reads one ROI per patient: "
                                    "give each lesion its own patient_id (one clinical row each) and name its "
                                    "patient with data.patient_column", column="lesion_id"))
    return problems


def _check_roi_sizes(extents: list[float], cfg: StudyConfig, source: str) -> list[Problem]:
    """ROI in-plane extents (mm) against the patch: a fixed ``side_mm`` that cuts the larger ROIs off,
    or makes them a speck of the patch; proposes a side that suits them (1.5 x their 90th percentile)."""
    patch = cfg.preprocess.patch
    side = getattr(patch, "side_mm", None)
    if not extents or side is None:
        return []
    e = np.asarray(extents, float)
    p10, p50, p90 = np.percentile(e, [10, 50, 90])
    proposal = float(max(8.0, 8.0 * np.ceil(1.5 * p90 / 8.0)))
    summary = (f"the ROIs span {e.min():.0f}-{e.max():.0f} mm in plane (median {p50:.0f}, 90th percentile "
               f"{p90:.0f})")
    if p90 > side:
        return [Problem(source, f"{summary}, wider than the {side:g} mm patch (preprocess.patch.side_mm): "
                                f"{int((e > side).sum())} ROIs are cut off; propose side_mm: {proposal:g}",
                        column="mask", severity="warning")]
    if p50 < side / 6:
        return [Problem(source, f"{summary}: in the {side:g} mm patch (preprocess.patch.side_mm) the median ROI "
                                f"fills {100 * p50 / side:.0f}% of the side and the network mostly sees its "
                                f"surroundings; propose side_mm: {proposal:g}", column="mask", severity="warning")]
    return []


def _check_manifest_rows(manifest: pd.DataFrame, clinical: pd.DataFrame, cfg: StudyConfig, source: str) -> list[Problem]:
    problems = []
    known = set(clinical["patient_id"].dropna())
    for _, r in manifest.iterrows():
        if r["patient_id"] and r["patient_id"] not in known:
            problems.append(Problem(source, f"patient '{r['patient_id']}' has images but no row in the clinical table",
                                    row=r["row"], column="patient_id"))
        if not r["mask"] and not r["bbox"]:
            problems.append(Problem(source, "no ROI: give a mask or a bbox", row=r["row"], column="mask"))
        if r["bbox"]:
            try:
                parse_bbox(r["bbox"])
            except ValueError as exc:
                problems.append(Problem(source, str(exc), row=r["row"], column="bbox"))
    key = ["patient_id", "phase", "timepoint", "lesion_id", "reader"]
    dup = manifest.duplicated(key, keep="first")
    for _, r in manifest[dup].iterrows():
        problems.append(Problem(source, "duplicated image row (same patient, phase, timepoint, lesion and reader)",
                                row=r["row"], column="patient_id"))
    if "cohort" in manifest.columns:
        per = manifest.groupby("patient_id")["cohort"].nunique()
        for pid in per[per > 1].index:
            rows = manifest.loc[manifest["patient_id"] == pid, "row"].tolist()
            problems.append(Problem(source, f"patient '{pid}' is in two cohorts "
                                    f"({', '.join(sorted(manifest.loc[manifest['patient_id'] == pid, 'cohort'].astype(str).unique()))})",
                                    row=rows[0], column="cohort"))
        clin_cohort = clinical.set_index("patient_id")["cohort"]
        for _, r in manifest.drop_duplicates("patient_id").iterrows():
            if r["patient_id"] in clin_cohort.index and pd.notna(r["cohort"]) and r["cohort"] != clin_cohort[r["patient_id"]]:
                problems.append(Problem(source, f"patient '{r['patient_id']}' is in two cohorts: '{r['cohort']}' here, "
                                        f"'{clin_cohort[r['patient_id']]}' by the study's cohort rule", row=r["row"], column="cohort"))
    have = manifest.groupby("patient_id")["phase"].apply(set)
    for _, c in clinical.iterrows():
        pid = c["patient_id"]
        if pid not in have.index:
            problems.append(Problem(str(cfg.clinical_path), f"patient '{pid}' has no image in the manifest",
                                    row=c["row"], column="patient_id"))
            continue
        for phase in cfg.preprocess.phases:
            if phase not in have[pid]:
                problems.append(Problem(source, f"patient '{pid}' has no '{phase}' image (phases required by "
                                        "preprocess.phases)", column="phase"))
    return problems


def _check_one_image(args) -> tuple[list[Problem], list[float]]:
    source, remote, rows = args
    extents: list[float] = []
    first = rows[0]
    problems: list[Problem] = []
    try:
        image = remote.local(first["image_path"])  # a URL is read through the cache (fetched once)
        geom = read_image_geometry(image)
        raw_geom = read_image_geometry(image, canonical=False)
    except InputError as exc:
        return [Problem(source, f"{p.reason} ({as_written(p.file)})", row=first["row"], column="image")
                for p in exc.problems], extents
    for r in rows:
        if r["mask_path"]:
            problems += _check_mask(r, geom, source, remote, extents)
        if r["bbox"]:
            try:
                box = parse_bbox(r["bbox"])
            except ValueError:
                continue  # reported by the row checks
            size = raw_geom.size
            if min(box[:3]) < 0 or any(box[3 + k] >= size[k] for k in range(3)):
                problems.append(Problem(source, f"bbox {r['bbox']} lies outside the image (size {size[0]}x{size[1]}x{size[2]})",
                                        row=r["row"], column="bbox"))
    return problems, extents


def _inplane_extent_mm(sel: np.ndarray, spacing) -> float:
    """The ROI's larger in-plane extent in mm (array z, y, x; spacing x, y, z)."""
    zyx = np.nonzero(sel)
    if not len(zyx[0]):
        return 0.0
    dy = (zyx[1].max() - zyx[1].min() + 1) * spacing[1]
    dx = (zyx[2].max() - zyx[2].min() + 1) * spacing[0]
    return float(max(dx, dy))


def _check_mask(r, geom: Geometry, source: str, remote: RemoteCache, extents: list | None = None) -> list[Problem]:
    try:
        r = {**r, "mask_path": remote.local(r["mask_path"])}
    except InputError as exc:
        return [Problem(source, f"{p.reason} ({p.file})", row=r["row"], column="mask") for p in exc.problems]
    path, _ = split_reference(r["mask_path"])
    if not path.exists():
        return [Problem(source, f"mask file does not exist ({path})", row=r["row"], column="mask")]
    try:
        if is_image_file(path):
            mgeom = read_image_geometry(r["mask_path"])
            reasons = geometry_mismatch(geom, mgeom)
            if reasons:
                return [Problem(source, "mask/image geometry mismatch: " + "; ".join(reasons), row=r["row"], column="mask")]
            arr = sitk.GetArrayFromImage(read_image(path, canonical=False))
            _, sel = split_reference(r["mask_path"])
            roi = (np.abs(arr - float(sel)) < 0.5) if sel else (np.abs(arr) > 0.5)
            if not roi.any():
                return [Problem(source, "empty mask (no ROI voxel)", row=r["row"], column="mask")]
            if extents is not None and not r.get("reader"):
                extents.append(_inplane_extent_mm(roi, mgeom.spacing))
        else:
            ref = sitk.Image(list(geom.size), sitk.sitkUInt8)
            ref.SetSpacing(geom.spacing)
            ref.SetOrigin(geom.origin)
            ref.SetDirection(geom.direction)
            read_mask(r["mask_path"], ref)
    except InputError as exc:
        return [Problem(source, f"{p.reason} ({as_written(p.file)})", row=r["row"], column="mask")
                for p in exc.problems]
    except RuntimeError as exc:
        return [Problem(source, f"unreadable mask {as_written(str(path))}: "
                        f"{str(exc).strip().splitlines()[-1][:200]}", row=r["row"], column="mask")]
    return []


def _check_images(manifest: pd.DataFrame, source: str, workers: int, remote: RemoteCache,
                  extents: list | None = None) -> list[Problem]:
    groups = [(source, remote, g.to_dict("records")) for _, g in manifest.groupby("image_path", sort=False)]
    problems: list[Problem] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for probs, ext in pool.map(_check_one_image, groups):
            problems += probs
            if extents is not None:
                extents += ext
    return sorted(problems, key=lambda p: (p.row or 0))


def summarise(clinical: pd.DataFrame, manifest: pd.DataFrame | None, cfg: StudyConfig) -> dict[str, pd.DataFrame]:
    """Summary tables: patients per cohort and centre, outcome per cohort, images, missing values."""
    out: dict[str, pd.DataFrame] = {}
    if "cohort" in clinical.columns:
        center = clinical["center"] if "center" in clinical.columns else pd.Series("(one centre)", index=clinical.index)
        out["patients"] = pd.crosstab(clinical["cohort"].fillna("?"), center.fillna("?"),
                                      margins=True, margins_name="total")
        rows = []
        for name, g in clinical.groupby(clinical["cohort"].fillna("?")):
            row = {"cohort": name, "patients": len(g)}
            if cfg.outcome.kind == "binary" and cfg.outcome.label in g.columns:
                y = pd.to_numeric(g[cfg.outcome.label], errors="coerce")
                row.update({"positive": int((y == 1).sum()), "negative": int((y == 0).sum()),
                            "positive_%": round(100 * float((y == 1).mean()), 1) if len(y) else np.nan})
            if cfg.outcome.kind == "survival" or cfg.outcome.extra_survival:
                tcol, ecol = ((cfg.outcome.time, cfg.outcome.event) if cfg.outcome.kind == "survival"
                              else (cfg.outcome.extra_survival[0].time, cfg.outcome.extra_survival[0].event))
                if tcol in g.columns and ecol in g.columns:
                    t = pd.to_numeric(g[tcol], errors="coerce")
                    e = pd.to_numeric(g[ecol], errors="coerce")
                    row.update({"events": int((e == 1).sum()), "events_%": round(100 * float((e == 1).mean()), 1),
                                f"median_followup_{cfg.outcome.time_unit}": round(float(t[e == 0].median()), 2)
                                if (e == 0).any() else np.nan})
            rows.append(row)
        out["outcome"] = pd.DataFrame(rows).set_index("cohort")
    if manifest is not None and "phase" in manifest.columns:
        out["images"] = (manifest.drop_duplicates(["image_path"])
                         .groupby(["phase", "timepoint"]).size().rename("images").to_frame())
        out["lesions"] = (manifest.groupby(["phase", "timepoint", "lesion_site"]).size().rename("rois").to_frame())
    variables = cfg.clinical.variables or [c for c in clinical.columns if c not in
                                           {"patient_id", "center", "cohort", "row", *cfg.outcome.columns}]
    present = [v for v in variables if v in clinical.columns]
    miss = clinical[present].isna().sum()
    out["missing"] = pd.DataFrame({"missing": miss, "missing_%": (100 * miss / max(len(clinical), 1)).round(1)})
    return out
