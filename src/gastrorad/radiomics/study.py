"""``gastrorad radiomics``: the handcrafted feature tables of a study, one CSV per phase.

Settings follow the study file: the preprocessing spacing and window (so handcrafted and
deep features see the same resampled, clipped intensities), ``radiomics.bin_width``, and 2D
shape and in-plane texture when every ROI lies on one axial slice (S1's and S5's ROI is drawn
on the tumour's largest slice), 3D when they span several (``radiomics.force2d`` overrides). The
table of each phase is ``<output>/radiomics_<phase>.csv`` (patient_id, cohort, features);
per-instance results are cached under ``<output>/cache/radiomics``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd

from gastrorad.config.study import StudyConfig
from gastrorad.io.atomic import atomic_write_text


def radiomics_enabled(cfg: StudyConfig) -> bool:
    """Every study but S3's box-annotated longitudinal one (no mask, no ROI to describe)."""
    return cfg.radiomics.enabled and cfg.longitudinal is None and cfg.has_images


def settings_for(cfg: StudyConfig):
    from gastrorad.radiomics.handcrafted import HandcraftedSettings
    r = cfg.radiomics
    window = (r.window or cfg.preprocess.window).bounds
    spacing = tuple(cfg.preprocess.spacing) if cfg.preprocess.spacing is not None else None
    interpolation = "nearest" if cfg.preprocess.interpolation == "nearest" else (
        "bspline" if cfg.preprocess.interpolation == "bspline" else "linear")
    classes = tuple("shape" if c == "shape" else c for c in r.classes)
    return HandcraftedSettings(spacing=spacing, bin_width=r.bin_width, window=window, classes=classes,
                               force2d=r.force2d, interpolation=interpolation)


def radiomics_paths(cfg: StudyConfig) -> list[Path]:
    return [cfg.output_dir / f"radiomics_{p}.csv" for p in cfg.preprocess.phases]


def radiomics_settings_path(cfg: StudyConfig) -> Path:
    """``radiomics.json``: the library, the settings used (2D or 3D resolved) and why: the
    methods section of a paper, and the caption of the report's deep-vs-handcrafted table."""
    return cfg.output_dir / "radiomics.json"


def radiomics_reader_paths(cfg: StudyConfig) -> list[Path]:
    """Handcrafted features of the re-segmented ROIs and of the same patients' main reading
    (``r1``), per phase: written when the manifest has re-segmentations (S5) and read by the ICC
    filter of the handcrafted reference, so it passes the same reproducibility screen as the deep one."""
    return [cfg.output_dir / f"radiomics_{p}_readers.csv" for p in cfg.preprocess.phases]


def _compute(cfg: StudyConfig):
    """Where the per-patient extraction runs: the study's ``compute:`` section (workers default
    to ``radiomics.workers``)."""
    from gastrorad.io.compute import Compute
    return Compute.from_settings(cfg.compute, default_workers=cfg.radiomics.workers)


def extract_study_radiomics(cfg: StudyConfig, *, progress=None, log=None) -> dict[str, pd.DataFrame]:
    """Handcrafted features of every patient's primary ROI at baseline (main reading), per phase.

    ``log(line)`` gets whether the features are 2D or 3D and why (decided by the ROIs unless
    ``radiomics.force2d`` is set); re-segmentations for the ICC filter use the same choice."""
    from gastrorad.data.cohorts import assign_cohorts
    from gastrorad.data.tables import read_table
    from gastrorad.errors import InputError
    from gastrorad.data.tables import remote_cache
    from gastrorad.radiomics.table import extract_feature_table
    res = extract_feature_table(cfg.manifest_path, settings=settings_for(cfg),
                                cache_dir=cfg.output_dir / "cache" / "radiomics", workers=_compute(cfg),
                                progress=progress, phases=cfg.preprocess.phases, remote=remote_cache(cfg))
    res.raise_if_errors()
    what, why = _dimension(cfg, res)
    if log is not None:
        log(f"    radiomics: {what} ({why})")
    settings = res.settings if res.force2d is None else replace(res.settings, force2d=res.force2d)
    atomic_write_text(radiomics_settings_path(cfg), json.dumps(
        {"library": res.library, "features": what, "why": why, "settings": settings.to_dict()}, indent=1))
    clinical = read_table(cfg.clinical_path)
    assigned, problems = assign_cohorts(clinical, cfg, str(cfg.clinical_path))
    if problems:
        raise InputError(problems)
    cohorts = pd.DataFrame({"patient_id": clinical.patient_id.astype(str),
                            "cohort": clinical.patient_id.map(assigned)})
    out = {}
    for phase in cfg.preprocess.phases:
        t = res.table[res.table.phase == phase].drop(columns=["phase"])
        t = cohorts.merge(t, on="patient_id", how="inner")
        atomic_write_text(cfg.output_dir / f"radiomics_{phase}.csv", t.to_csv(index=False))
        out[phase] = t
    _reader_tables(cfg, res.table, progress, res.force2d)
    return out


def _dimension(cfg: StudyConfig, res) -> tuple[str, str]:
    """2D or 3D features, and why (for the run log, ``radiomics.json`` and the report)."""
    if cfg.radiomics.force2d is not None:
        why = "radiomics.force2d in the study file"
    elif res.notes:
        why = res.notes[0]
    else:
        why = "every ROI lies on one axial slice" if res.force2d else "the ROIs span several axial slices"
    return ("2D shape and in-plane texture" if res.force2d else "3D shape and texture"), why


def _reader_tables(cfg: StudyConfig, main: pd.DataFrame, progress, force2d: bool | None) -> None:
    """``radiomics_<phase>_readers.csv`` for the ICC filter, when the manifest names re-segmentations."""
    from gastrorad.data.tables import read_table
    from gastrorad.data.tables import remote_cache
    from gastrorad.radiomics.table import extract_feature_table
    manifest = read_table(cfg.manifest_path)
    readers = sorted({str(r) for r in manifest.get("reader", pd.Series(dtype=str)).dropna() if str(r).strip()})
    if not readers or not cfg.signature.icc_from_readers:
        return
    settings = replace(settings_for(cfg), force2d=force2d)  # the main reading's choice
    again = []
    for reader in readers:
        r = extract_feature_table(cfg.manifest_path, settings=settings,
                                  cache_dir=cfg.output_dir / "cache" / "radiomics", workers=_compute(cfg),
                                  progress=progress, phases=cfg.preprocess.phases, reader=reader,
                                  remote=remote_cache(cfg))
        r.raise_if_errors()
        again.append(r.table.assign(reader=reader))
    again = pd.concat(again, ignore_index=True)
    for phase, path in zip(cfg.preprocess.phases, radiomics_reader_paths(cfg)):
        b = again[again.phase == phase].drop(columns=["phase"])
        a = main[(main.phase == phase) & main.patient_id.isin(set(b.patient_id))].drop(columns=["phase"])
        t = pd.concat([a.assign(reader="r1"), b], ignore_index=True)
        atomic_write_text(path, t[["patient_id", "reader", *[c for c in t.columns if c not in ("patient_id",
                                                                                              "reader")]]]
                          .to_csv(index=False))
