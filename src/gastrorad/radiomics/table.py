"""The handcrafted feature table of a study: one row per (patient, phase), cached, in parallel.

For each manifest row of the chosen lesion, time point and reader: read the CT (canonical
LPS, HU) and its mask with gastrorad's readers (NIfTI/NRRD/MHA, DICOM series; label image,
SEG or RTSTRUCT; any non-zero label is the ROI), extract the IBSI features of
:func:`~gastrorad.radiomics.handcrafted.extract_handcrafted`, and cache them per image
instance. The cache key is a SHA-256 of the image bytes (every file of a DICOM folder),
the mask bytes, the settings and the PyRadiomics version, so a rerun reads every instance
from disk and a changed input or setting recomputes exactly the instances it affects.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from gastrorad.errors import InputError, Problem
from gastrorad.io.atomic import atomic_write_text
from gastrorad.io.hashing import code_hash
from gastrorad.io.images import read_image
from gastrorad.io.remote import RemoteCache, as_written
from gastrorad.io.masks import read_mask
from gastrorad.io.compute import Compute, FailOnProblems, failed_result, map_patients
from gastrorad.preprocess.cache import file_digest
from gastrorad.radiomics.handcrafted import HandcraftedSettings, extract_handcrafted, library_version, roi_slice_count

CACHE_FORMAT = 1
KEY_COLUMNS = ("patient_id", "phase")


@dataclass
class HandcraftedTable:
    """Result of :func:`extract_feature_table`.

    ``table`` has the columns ``patient_id``, ``phase`` and one column per feature
    (``original_<class>_<Feature>``), one row per (patient, phase) that could be
    computed, sorted by patient and phase. ``problems`` lists the instances that could
    not (file, row and reason); everything computed is in the cache either way.
    """

    table: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)
    computed: int = 0
    cached: int = 0
    seconds: float = 0.0
    library: str = ""
    settings: HandcraftedSettings | None = None
    force2d: bool | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def feature_names(self) -> list[str]:
        return [c for c in self.table.columns if c not in KEY_COLUMNS]

    def raise_if_errors(self) -> None:
        if self.problems:
            raise InputError(self.problems)

    def summary(self) -> str:
        dims = "" if self.force2d is None else (", 2D in-plane" if self.force2d else ", 3D")
        return (f"{len(self.table)} rows x {len(self.feature_names)} handcrafted features ({self.library}{dims}); "
                f"{self.computed} computed, {self.cached} from cache, {len(self.problems)} problem(s), "
                f"{self.seconds:.1f} s")


def instance_key(image_ref: str, mask_ref: str, settings: HandcraftedSettings, library: str) -> str:
    """Cache key of one image instance's features (hex SHA-256)."""
    payload = {"format": CACHE_FORMAT, "code": code_hash("radiomics", "preprocess", "io"), "image": file_digest(image_ref), "mask": file_digest(mask_ref),
               "settings": settings.to_dict(), "library": library}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def extract_feature_table(
    manifest: str | os.PathLike | pd.DataFrame | Iterable[Mapping],
    *,
    settings: HandcraftedSettings | None = None,
    cache_dir: str | os.PathLike | None = None,
    workers: int | Compute = 1,
    progress: Callable[[int, int], None] | None = None,
    phases: Iterable[str] | None = None,
    lesion_id: str = "primary",
    timepoint: int = 0,
    reader: str = "",
    remote: RemoteCache | None = None,
) -> HandcraftedTable:
    """Handcrafted features of every patient and phase of a study.

    Parameters
    ----------
    manifest
        The image manifest: a CSV/Parquet path (read and checked by
        :func:`gastrorad.data.tables.load_manifest`, paths resolved against its folder), a
        DataFrame as ``load_manifest`` returns, or rows (mappings) with ``patient_id``,
        ``image`` (or ``image_path``), ``mask`` (or ``mask_path``) and optionally
        ``phase``, ``timepoint``, ``lesion_id``, ``reader``, ``row``.
    settings
        Extraction settings (default: :class:`HandcraftedSettings` defaults, 1 mm
        isotropic, bin width 25 HU, 3D). With ``force2d=None`` each ROI decides (2D on one
        axial slice, 3D on several); when the study's ROIs disagree, the single-slice ones
        are computed again in 3D, so that every row holds the same features (``notes``
        says so), and ``force2d`` of the result is what was used.
    cache_dir
        Folder of the per-instance cache (``<patient>/<phase>_t<tp>_<lesion>[_<reader>]_<key>.json``,
        written atomically); ``None`` disables caching.
    workers
        Worker processes over patients (1: in this process; more: a Dask LocalCluster), or a
        :class:`~gastrorad.io.compute.Compute` (e.g. a Dask scheduler address). A patient that
        fails is retried once, then reported in ``problems``; the others finish.
    progress
        ``progress(done, total)`` after each patient.
    phases
        Phases to extract (default: all in the manifest).
    lesion_id, timepoint, reader
        Which ROI is the patient's: by default the primary tumour at baseline in the main
        reading. ``reader="R2"`` gives the table of a re-segmentation (for ICC screening).
    remote
        Where images and masks given as URLs are cached (default: a :class:`~gastrorad.io.remote.RemoteCache`
        in the user's cache folder).

    Returns
    -------
    HandcraftedTable
    """
    t0 = time.perf_counter()
    settings = settings or HandcraftedSettings()
    library = library_version()
    rows, source = _manifest_rows(manifest)
    phases = set(phases) if phases is not None else None
    chosen = [r for r in rows if r["lesion_id"] == lesion_id and int(r["timepoint"]) == int(timepoint)
              and r["reader"] == reader and (phases is None or r["phase"] in phases)]
    seen: dict[tuple, int] = {}
    dupes = []
    for r in chosen:
        k = (r["patient_id"], r["phase"])
        if k in seen:
            dupes.append(Problem(source, f"second image for patient {k[0]}, phase {k[1]}, lesion {lesion_id}, "
                                         f"time point {timepoint} (first at row {seen[k]})", row=r["row"]))
        seen.setdefault(k, r["row"])
    if dupes:
        raise InputError(dupes)
    by_patient: dict[str, list[dict]] = {}
    for r in chosen:
        by_patient.setdefault(r["patient_id"], []).append(r)
    cache = str(cache_dir) if cache_dir is not None else None
    remote = remote or RemoteCache()
    tasks = [(settings, library, source, cache, remote, by_patient[p]) for p in sorted(by_patient)]
    results = map_patients(FailOnProblems(_patient_features), tasks, workers, progress,
                           on_failure=_failed_patient)
    records = [rec for res in results for rec in res["records"]]
    used = {rec["force2d"] for rec in records}
    notes = []
    if len(used) > 1:  # ROIs on one slice and on several: the one-slice ones again, in 3D
        flat = {(r["patient_id"], r["phase"]) for r in records if r["force2d"]}
        in3d = replace(settings, force2d=False)
        redo = [(in3d, library, source, cache, remote, rows) for rows in
                ([r for r in by_patient[p] if (r["patient_id"], r["phase"]) in flat] for p in sorted(by_patient))
                if rows]
        notes.append(f"{len(flat)} of {len(records)} ROIs lie on one axial slice and the others span several: "
                     "3D features for all (set radiomics.force2d to choose)")
        more = map_patients(FailOnProblems(_patient_features), redo, workers, None, on_failure=_failed_patient)
        records = [r for r in records if (r["patient_id"], r["phase"]) not in flat]
        records += [rec for res in more for rec in res["records"]]
        results = [*results, *more]
        used = {False}
    records.sort(key=lambda r: (r["patient_id"], r["phase"]))
    names = list(dict.fromkeys(k for rec in records for k in rec["features"]))
    table = pd.DataFrame([{"patient_id": r["patient_id"], "phase": r["phase"], **r["features"]} for r in records],
                         columns=[*KEY_COLUMNS, *names])
    problems = sorted((p for res in results for p in res["problems"]), key=lambda p: p.row or 0)
    return HandcraftedTable(table.reset_index(drop=True), problems, sum(r["computed"] for r in results),
                            sum(r["cached"] for r in results), time.perf_counter() - t0, library, settings,
                            force2d=used.pop() if len(used) == 1 else settings.force2d, notes=notes)


def _manifest_rows(manifest) -> tuple[list[dict], str]:
    """Rows as dicts with resolved paths and defaults filled, and the name used in errors."""
    if isinstance(manifest, (str, os.PathLike)):
        from gastrorad.data.tables import load_manifest
        path = Path(manifest)
        df, problems = load_manifest(path, path.parent)
        if problems:
            raise InputError(problems)
        source = str(path)
    elif isinstance(manifest, pd.DataFrame):
        df, source = manifest, "manifest"
    else:
        df, source = pd.DataFrame(list(manifest)), "manifest"
    rows = []
    for i, rec in enumerate(df.to_dict("records")):
        image = _text(rec.get("image_path")) or _text(rec.get("image"))
        mask = _text(rec.get("mask_path")) or _text(rec.get("mask"))
        rows.append({"patient_id": str(rec["patient_id"]), "image": image, "mask": mask,
                     "phase": _text(rec.get("phase")) or "venous",
                     "timepoint": int(rec["timepoint"]) if _text(rec.get("timepoint")) else 0,
                     "lesion_id": _text(rec.get("lesion_id")) or "primary",
                     "reader": _text(rec.get("reader")), "row": int(rec.get("row", i + 2))})
    return rows, source


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value).strip()


def _cache_path(cache_dir: str, row: dict, key: str) -> Path:
    reader = f"_{_safe(row['reader'])}" if row["reader"] else ""
    name = f"{_safe(row['phase'])}_t{int(row['timepoint'])}_{_safe(row['lesion_id'])}{reader}_{key[:16]}.json"
    return Path(cache_dir) / _safe(row["patient_id"]) / name


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(text))


def _patient_features(task: tuple) -> dict:
    """Features of one patient's instances (cached ones are read back). Runs in a worker."""
    settings, library, source, cache_dir, remote, rows = task
    images: dict = {}
    records, problems, computed, cached = [], [], 0, 0
    for row in rows:
        column = "image"
        try:
            row = {**row, "image": remote.local(row["image"])}
            column = "mask"
            row = {**row, "mask": remote.local(row["mask"])}
            column = "image"
            if not row["mask"]:
                column = "mask"
                raise InputError(Problem(row["image"], "handcrafted features need a mask (this row has none)"))
            path = None
            if cache_dir is not None:
                path = _cache_path(cache_dir, row, instance_key(row["image"], row["mask"], settings, library))
            if path is not None and path.exists():
                stored = json.loads(path.read_text(encoding="utf-8"))
                features, force2d = stored["features"], stored["meta"]["settings"]["force2d"]
                cached += 1
            else:
                if row["image"] not in images:
                    images[row["image"]] = read_image(row["image"])
                column = "mask"
                image = images[row["image"]]
                mask = read_mask(row["mask"], image)
                used = settings.resolved(roi_slice_count(mask))
                features = extract_handcrafted(image, mask, settings=used, source=row["mask"])
                force2d = used.force2d
                if path is not None:
                    meta = {"patient_id": row["patient_id"], "phase": row["phase"], "timepoint": row["timepoint"],
                            "lesion_id": row["lesion_id"], "reader": row["reader"], "library": library,
                            "settings": used.to_dict()}
                    atomic_write_text(path, json.dumps({"features": features, "meta": meta}, indent=1))
                computed += 1
            records.append({"patient_id": row["patient_id"], "phase": row["phase"], "features": features,
                            "force2d": force2d})
        except InputError as exc:
            problems += [Problem(source, f"{p.reason} ({as_written(p.file)})", row=row["row"], column=column)
                         for p in exc.problems]
        except (ValueError, RuntimeError) as exc:
            problems.append(Problem(source, f"cannot compute handcrafted features: {exc} ({row['mask']})",
                                    row=row["row"], column=column))
    return {"records": records, "problems": problems, "computed": computed, "cached": cached}


def _failed_patient(task: tuple, error: BaseException, attempts: int) -> dict:
    """The result of a patient that failed on every attempt: problems naming its manifest rows."""
    source, rows = task[2], task[5]
    return failed_result(error, attempts, empty={"records": [], "computed": 0, "cached": 0}, problems=lambda why: [
        Problem(source, f"patient {r['patient_id']}: {why}", row=r["row"], column="image") for r in rows])
