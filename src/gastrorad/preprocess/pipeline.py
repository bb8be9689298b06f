"""``gastrorad preprocess``: patches for every image instance of a study, cached, on Dask.

For each manifest row of a configured phase: read the CT (canonical LPS, HU), read the
mask onto its grid (or build a box mask from ``bbox``), measure the ROI on the native
grid, and let the study's patch mode cut, resample, window and normalise. Results go to
the cache (see :mod:`.cache`) and an index ``patches.csv`` in the run folder lists them.

Patients run where the study's ``compute:`` section says (:mod:`gastrorad.io.compute`): in
this process, on a Dask LocalCluster, or on a running Dask scheduler; the patches are the
same bytes wherever they were cut. A patient whose image cannot be read fails its task, is
retried once and is reported; the others finish, and a rerun cuts only what is missing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from gastrorad.config.study import StudyConfig
from gastrorad.data.tables import load_manifest, local_row, remote_cache
from gastrorad.data.validate import parse_bbox, validate_study
from gastrorad.errors import InputError, Problem
from gastrorad.io.atomic import atomic_write_text
from gastrorad.io.geometry import to_canonical
from gastrorad.io.images import read_image
from gastrorad.io.masks import read_mask
from gastrorad.io.compute import Compute, FailOnProblems, failed_result, map_patients
from gastrorad.io.remote import as_written
from gastrorad.preprocess.cache import instance_key, save_patches
from gastrorad.preprocess.patches import PatchRequest, PatchSet, get_patch_mode
from gastrorad.preprocess.roi import roi_from_bbox, roi_from_mask


@dataclass
class PreprocessResult:
    index: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)
    computed: int = 0
    cached: int = 0
    seconds: float = 0.0


def study_params(cfg: StudyConfig, lesion_site: str) -> dict:
    """Every parameter that changes a patch (the cache key's parameter part)."""
    pp = cfg.preprocess
    window = pp.windows_by_site.get(lesion_site, pp.window)
    return {"spacing": pp.spacing, "interpolation": pp.interpolation, "window": list(window.bounds),
            "normalize": pp.normalize, "patch": pp.patch.model_dump()}


def box_in_canonical(box_file: tuple[int, ...], raw: sitk.Image, canonical: sitk.Image) -> tuple[int, ...]:
    """A box given in the stored file's indices, as indices of the canonical (LPS) image."""
    x0, y0, z0, x1, y1, z1 = box_file
    pts = [canonical.TransformPhysicalPointToIndex(raw.TransformIndexToPhysicalPoint(tuple(int(v) for v in c)))
           for c in ((x0, y0, z0), (x1, y1, z1))]
    lo, hi = np.min(pts, axis=0), np.max(pts, axis=0)
    return (int(lo[0]), int(lo[1]), int(lo[2]), int(hi[0]), int(hi[1]), int(hi[2]))


def _box_mask(box: tuple[int, ...], like: sitk.Image) -> sitk.Image:
    x0, y0, z0, x1, y1, z1 = box
    arr = np.zeros(sitk.GetArrayViewFromImage(like).shape, dtype=np.uint8)
    arr[z0:z1 + 1, y0:y1 + 1, x0:x1 + 1] = 1
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(like)
    return out


def cut_patches(image: sitk.Image, patch, *, mask: sitk.Image | None = None, bbox: tuple[int, ...] | None = None,
                spacing=None, interpolation: str = "linear", window: tuple[float, float] = (-350.0, 450.0),
                normalize: str = "zscore") -> PatchSet:
    """Cut the patches of one image and ROI: the library entry point behind ``preprocess``.

    ``image`` is a HU volume in any orientation; the ROI is either ``mask`` (binary, on the
    image's grid) or ``bbox`` (x0, y0, z0, x1, y1, z1 in the image's own voxel indices, as
    ITK-SNAP shows them, 0-based). ``patch`` is one of the patch configs
    (:class:`~gastrorad.config.study.Stack25DPatch`, ...). Both are brought to the canonical
    orientation first, so a RAS-stored NIfTI and an LPS DICOM give the same patch.
    """
    canonical = to_canonical(image)
    if mask is not None:
        binary = mask.GetPixelID() == sitk.sitkUInt8 and int(sitk.GetArrayViewFromImage(mask).max()) <= 1
        mask = to_canonical(mask if binary else sitk.Cast(mask > 0, sitk.sitkUInt8))  # read_mask's are binary
        roi = roi_from_mask(sitk.GetArrayViewFromImage(mask), canonical.GetSpacing())
    elif bbox is not None:
        box = box_in_canonical(tuple(bbox), image, canonical)
        mask = _box_mask(box, canonical)
        roi = roi_from_bbox(box, canonical.GetSpacing())
    else:
        raise ValueError("give a mask or a bbox")
    req = PatchRequest(image=canonical, mask=mask, roi=roi, patch=patch,
                       spacing=tuple(spacing) if spacing is not None else None,
                       interpolation=interpolation, window=tuple(window), normalize=normalize)
    ps = get_patch_mode(patch.mode)(req)
    ps.meta.update({"roi_voxels": roi.voxels, "roi_extent_mm": list(roi.extent_mm),
                    "source_spacing_mm": list(canonical.GetSpacing()), "window": list(window)})
    return ps


def process_instance(row: dict, cfg: StudyConfig, images: dict) -> PatchSet:
    """Cut the patches of one manifest row; ``images`` caches images read for this patient."""
    pp = cfg.preprocess
    path = row["image_path"]
    if path not in images:
        raw = read_image(path, canonical=False)
        images[path] = (raw, to_canonical(raw))
    raw, image = images[path]
    window = pp.windows_by_site.get(row["lesion_site"], pp.window)
    common = dict(spacing=pp.spacing, interpolation=pp.interpolation, window=window.bounds, normalize=pp.normalize)
    if row["mask_path"]:
        ps = cut_patches(image, pp.patch, mask=read_mask(row["mask_path"], image), **common)
    else:
        ps = cut_patches(raw, pp.patch, bbox=parse_bbox(row["bbox"]), **common)
    ps.meta.update({"patient_id": row["patient_id"], "phase": row["phase"], "timepoint": int(row["timepoint"]),
                    "lesion_id": row["lesion_id"]})
    return ps


def _instance_path(cfg: StudyConfig, row: dict, key: str) -> Path:
    reader = f"_{row['reader']}" if row.get("reader") else ""
    name = f"{row['phase']}_t{int(row['timepoint'])}_{row['lesion_id']}{reader}_{key[:16]}.npz"
    return cfg.cache_dir / _safe(row["patient_id"]) / name


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(text))


def process_patient(task: tuple[StudyConfig, list[dict]]) -> dict:
    """All instances of one patient: cached ones are skipped. Runs in a worker process.

    A CT is read once for the instances that share it and dropped after the last of them
    is cut, so a worker holds at most one of the patient's volumes at a time (the rows are
    taken image by image).
    """
    cfg, rows = task
    rows = sorted(rows, key=lambda r: r["image_path"])  # stable: the manifest's order within an image
    last_use = {r["image_path"]: i for i, r in enumerate(rows)}
    images: dict = {}
    remote = remote_cache(cfg)
    out, problems, computed, cached = [], [], 0, 0
    for i, written in enumerate(rows):
        row = written
        try:
            row = local_row(written, remote)  # URLs: a local cached copy, so the key hashes the same bytes
            key = instance_key(row["image_path"], row["mask_path"], row["bbox"], study_params(cfg, row["lesion_site"]))
            path = _instance_path(cfg, row, key)
            if path.exists():
                cached += 1
            else:
                ps = process_instance(row, cfg, images)
                save_patches(path, ps.array, ps.channels, ps.meta)
                computed += 1
            out.append({"patient_id": row["patient_id"], "phase": row["phase"], "timepoint": int(row["timepoint"]),
                        "lesion_id": row["lesion_id"], "lesion_site": row["lesion_site"], "reader": row["reader"],
                        "path": str(path), "key": key})
        except InputError as exc:
            problems += [Problem(str(cfg.manifest_path), f"{p.reason} ({as_written(p.file)})", row=row["row"],
                                 column=p.column or "image") for p in exc.problems]
        except (ValueError, RuntimeError) as exc:
            problems.append(Problem(str(cfg.manifest_path), f"cannot cut patches: {exc}", row=row["row"], column="mask"))
        if last_use[written["image_path"]] == i:  # the volume is cached under the path read (local copy of a URL)
            images.pop(row["image_path"], None)
    return {"rows": out, "problems": problems, "computed": computed, "cached": cached}


def _failed_patient(task: tuple[StudyConfig, list[dict]], error: BaseException, attempts: int) -> dict:
    """The result of a patient that failed on every attempt: problems naming its manifest rows."""
    cfg, rows = task
    return failed_result(error, attempts, empty={"rows": [], "computed": 0, "cached": 0}, problems=lambda why: [
        Problem(str(cfg.manifest_path), f"patient {r['patient_id']}: {why}", row=r["row"], column="image")
        for r in rows])


def preprocess_study(cfg: StudyConfig, *, workers: int | None = None, scheduler: str | None = None, progress=None,
                     validate: bool = True) -> PreprocessResult:
    """Cut (or find in the cache) the patches of every patient; write ``patches.csv``.

    Table errors (see :func:`validate_study`) stop the run before any work; image errors
    are collected per instance, and every patch already written stays valid.
    ``workers`` and ``scheduler`` override the study's ``compute:`` section (default
    workers: ``compute.workers``, else ``preprocess.workers``).
    ``progress(done, total)`` is called after each patient.
    """
    t0 = time.perf_counter()
    if validate:
        report = validate_study(cfg, check_images=False)
        report.raise_if_errors()
    manifest, problems = load_manifest(cfg.manifest_path, cfg.manifest_path.parent)
    if problems:
        raise InputError(problems)
    manifest = manifest[manifest["phase"].isin(cfg.preprocess.phases)]
    tasks = [(cfg, g.to_dict("records")) for _, g in manifest.groupby("patient_id", sort=True)]
    compute = Compute.from_settings(cfg.compute, workers=workers, scheduler=scheduler,
                                    default_workers=cfg.preprocess.workers)
    results = map_patients(FailOnProblems(process_patient), tasks, compute, progress, on_failure=_failed_patient)
    rows = [r for res in results for r in res["rows"]]
    index = pd.DataFrame(rows, columns=["patient_id", "phase", "timepoint", "lesion_id", "lesion_site", "reader",
                                        "path", "key"])
    index = index.sort_values(["patient_id", "phase", "timepoint", "lesion_id", "reader"]).reset_index(drop=True)
    out_dir = cfg.output_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "patches.csv", index.to_csv(index=False))
    probs = sorted((p for res in results for p in res["problems"]), key=lambda p: p.row or 0)
    return PreprocessResult(index, probs, sum(r["computed"] for r in results), sum(r["cached"] for r in results),
                            time.perf_counter() - t0)
