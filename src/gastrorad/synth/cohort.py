"""``gastrorad synth``: write a synthetic multi-centre study to a folder.

Output (all paths in the tables are relative to the folder)::

    images/<patient>_<phase>[_t<k>].nii.gz     CT in HU (int16); centre C is stored RAS-oriented
    masks/<patient>_<phase>[_t<k>]_<lesion>.nii.gz   ROI masks (S1/S5: the largest slice only)
    dicom/<patient>_<phase>/                   DICOM series (with --dicom), plus seg.dcm, rtstruct.dcm
    manifest.csv   one row per image instance (patient_id, image, mask or bbox, phase, timepoint, lesion_id, lesion_site)
    clinical.csv   one row per patient (patient_id, center, clinical variables, outcome)
    truth.csv      the latent phenotype and the true risk of each patient (never an input to a model)
    study.yaml     a study file that validates and preprocesses this folder as-is

Patients are generated independently from per-patient seeds spawned from the study seed,
so the output is identical for a seed whatever the number of worker processes.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy.spatial.distance import pdist

from gastrorad.io.atomic import atomic_write_text
from gastrorad.io.images import write_image
from gastrorad.io.parallel import process_pool
from gastrorad.synth import anatomy as A
from gastrorad.synth.lesions import TumourSpec, paint_liver_met, paint_node, paint_tumour
from gastrorad.synth.outcomes import KINDS, draw_patients
from gastrorad.synth.scanners import CENTRES, Scanner, scaled

#: Share of patients per centre for each kind (as the seeds' cohorts).
CENTRE_SHARES = {
    "s1": {"A": 0.55, "B": 0.20, "C": 0.25},
    "s2": {"A": 0.88, "B": 0.12},
    "s3": {"A": 0.82, "B": 0.18},
    "s4": {"A": 1.0},
    "s5": {"A": 0.67, "B": 0.33},
}
PHASES_OF = {"s1": ["venous"], "s2": ["venous"], "s3": ["venous"], "s4": ["venous"], "s5": ["arterial", "venous"]}
#: How the ROI is drawn: on the largest slice only (2D) or over the whole tumour (3D).
ROI_OF = {"s1": "slice", "s2": "volume", "s3": "box", "s4": "volume", "s5": "slice"}
HEIGHT_MM = 160.0
STORED_RAS = {"C"}  # centres whose files are written RAS-oriented, to exercise reorientation


@dataclass
class SynthResult:
    folder: Path
    study_file: Path
    n_patients: int
    n_images: int
    seconds: float


def _assign_centres(kind: str, n: int, rng: np.random.Generator) -> list[str]:
    shares = CENTRE_SHARES[kind]
    counts = {c: int(round(s * n)) for c, s in shares.items()}
    first = next(iter(counts))
    counts[first] += n - sum(counts.values())
    centres = [c for c, k in counts.items() for _ in range(k)]
    return list(rng.permutation(centres))


def _tumour_spec(row: pd.Series, rng: np.random.Generator, scale: float = 1.0) -> TumourSpec:
    return TumourSpec(
        site=row["site"], angle_deg=float(rng.uniform(0, 360)), length_mm=float(row["length_mm"]) * max(scale, 0.3),
        thickness_mm=max(4.5 + (float(row["thickness_mm"]) - 4.5) * scale, 5.0),
        heterogeneity=float(row["heterogeneity"]), necrosis=float(row["necrosis"]) * min(scale, 1.0),
        enhancement=float(row["enhancement_hu"]), serosal_invasion=float(row["thickness_mm"]) * scale >= 17.0,
    )


def _to_image(arr: np.ndarray, canvas: A.Canvas, dtype) -> sitk.Image:
    img = sitk.GetImageFromArray(arr.astype(dtype))
    img.SetSpacing((canvas.scanner.pixel_mm, canvas.scanner.pixel_mm, canvas.scanner.slice_mm))
    img.SetOrigin((float(canvas.x[0]), float(canvas.y[0]), -400.0))  # table position of the lowest slice
    return img


def _largest_slice_only(mask: np.ndarray) -> np.ndarray:
    k = int(np.argmax(mask.sum(axis=(1, 2))))
    out = np.zeros_like(mask)
    out[k] = mask[k]
    return out


def _longest_diameter_mm(mask: np.ndarray, pixel_mm: float) -> tuple[float, int]:
    k = int(np.argmax(mask.sum(axis=(1, 2))))
    pts = np.argwhere(mask[k]) * pixel_mm
    if len(pts) < 2:
        return float(pixel_mm), k
    if len(pts) > 600:
        pts = pts[:: len(pts) // 600 + 1]
    return float(pdist(pts).max() + pixel_mm), k


def _store(img: sitk.Image, centre: str) -> sitk.Image:
    return sitk.DICOMOrient(img, "RAS") if centre in STORED_RAS else img


def _bbox_file_index(mask: np.ndarray, img_lps: sitk.Image, stored: sitk.Image) -> str:
    """Box of the mask's largest slice as 'x0 y0 z x1 y1 z' indices of the stored file."""
    k = int(np.argmax(mask.sum(axis=(1, 2))))
    ys, xs = np.nonzero(mask[k])
    corners = [img_lps.TransformIndexToPhysicalPoint((int(x), int(y), k)) for x, y in
               ((xs.min(), ys.min()), (xs.max(), ys.max()))]
    idx = np.array([stored.TransformPhysicalPointToIndex(c) for c in corners])
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    return f"{lo[0]} {lo[1]} {lo[2]} {hi[0]} {hi[1]} {hi[2]}"


def render_patient(task: dict) -> dict:
    """Render one patient's images and masks; return its manifest rows and measurements."""
    kind, pid, row = task["kind"], task["patient_id"], pd.Series(task["truth"])
    out = Path(task["folder"])
    scanner: Scanner = scaled(CENTRES[row["center"]], task["matrix_scale"])
    rng = np.random.default_rng(task["seed"])
    anatomy_seed = int(rng.integers(2**31))
    habitus = A.Habitus.draw(np.random.default_rng(anatomy_seed), task["bmi"])
    rows, extra = [], {}
    timepoints = task.get("timepoints", [0])
    placed = 0
    lesion_plan = task.get("lesions", [])
    for t in timepoints:
        scale = float(task.get("scales", {}).get(t, 1.0))
        for attempt in (range(6) if t == timepoints[0] else [placed]):
            # Same anatomy and lesion shapes at every time point (same seeds). Rarely the
            # drawn wall position leaves no room for the tumour (e.g. cut by the top of the
            # field of view): turn it around the wall, then move it to the body.
            canvas = A.Canvas(scanner, HEIGHT_MM)
            A.build_anatomy(canvas, habitus, np.random.default_rng(anatomy_seed + 1))
            stomach = A.paint_stomach(canvas, habitus)
            extra_hu = np.zeros(canvas.shape, dtype=np.float32)
            lrng = np.random.default_rng(anatomy_seed + 2)
            spec = _tumour_spec(row, lrng, scale)
            spec.angle_deg += 90.0 * attempt
            if attempt >= 4:
                spec.site = "body"
            masks = {"primary": paint_tumour(canvas, stomach, spec, lrng, extra_hu)}
            placed = attempt
            if masks["primary"].sum() >= 10 or t != timepoints[0]:
                break  # follow-ups keep the baseline's placement, even when the tumour has shrunk away
        else:
            raise RuntimeError(f"synthetic tumour of {pid} could not be placed")
        for les in lesion_plan:
            r = les["radius_mm"] * float(les["scales"].get(t, 1.0))
            painter = paint_node if les["site"] == "lymph_node" else paint_liver_met
            masks[les["lesion_id"]] = painter(canvas, np.asarray(les["centre"]), r, lrng, extra_hu)
        for phase in PHASES_OF[kind]:
            prng = np.random.default_rng([task["seed"], t, PHASES_OF[kind].index(phase)])
            hu = A.render_phase(canvas.labels, phase, scanner, prng, extra_hu)
            img = _to_image(np.rint(hu), canvas, np.int16)
            stem = f"{pid}_{phase}" + (f"_t{t}" if kind == "s3" else "")
            stored = _store(img, row["center"])
            image_rel = f"images/{stem}.nii.gz"
            write_image(stored, out / image_rel)
            ct_files = None
            if task["dicom"]:
                from gastrorad.synth.dicom_writer import write_ct_series
                ct_files = write_ct_series(img, out / "dicom" / stem, patient_id=pid, series_key=stem,
                                           description=f"synthetic {phase}")
                image_rel = f"dicom/{stem}"
            for lesion_id, m in masks.items():
                if not m.any():
                    continue
                diameter, kmax = _longest_diameter_mm(m, scanner.pixel_mm)
                record = {"patient_id": pid, "image": image_rel, "phase": phase, "timepoint": t,
                          "lesion_id": lesion_id,
                          "lesion_site": "stomach" if lesion_id == "primary" else lesion_id.rsplit("_", 1)[0],
                          "diameter_mm": round(diameter, 2)}
                if ROI_OF[kind] == "box":
                    record["bbox"] = _bbox_file_index(m, img, stored)
                    record["mask"] = ""
                else:
                    roi = _largest_slice_only(m) if task.get("roi", ROI_OF[kind]) == "slice" else m
                    mimg = _to_image(roi, canvas, np.uint8)
                    mask_rel = f"masks/{stem}_{lesion_id}.nii.gz"
                    write_image(_store(mimg, row["center"]), out / mask_rel)
                    if ct_files is not None and lesion_id == "primary":
                        from gastrorad.synth.dicom_writer import write_rtstruct, write_seg
                        write_seg(mimg, ct_files, out / "dicom" / f"{stem}_seg.dcm")
                        write_rtstruct(mimg, ct_files, out / "dicom" / f"{stem}_rtstruct.dcm")
                        mask_rel = f"dicom/{stem}_seg.dcm"
                    record["mask"] = mask_rel
                    record["bbox"] = ""
                rows.append(record)
                if ROI_OF[kind] != "box" and task.get("resegment") and lesion_id == "primary":
                    # S5: the same ROI drawn again a month later (reader "r2"): one voxel grown or
                    # shrunk in-plane and nudged, as a second delineation differs
                    rows.append({**record, "mask": _resegment(roi, canvas, row["center"], out, stem, lesion_id,
                                                              np.random.default_rng([task["seed"], 99])),
                                 "reader": "r2"})
        if t == 0:
            extra["tumour_voxels"] = int(masks["primary"].sum())
    return {"rows": rows, "extra": extra}


def _resegment(roi: np.ndarray, canvas, centre: str, out: Path, stem: str, lesion_id: str, rng) -> str:
    from scipy import ndimage
    grow = rng.random() < 0.5
    struct = np.zeros((3, 3, 3), bool)
    struct[1] = ndimage.generate_binary_structure(2, 1)  # in-plane only
    m = ndimage.binary_dilation(roi, struct) if grow else ndimage.binary_erosion(roi, struct)
    if not m.any():
        m = roi
    m = np.roll(m, shift=(0, int(rng.integers(-1, 2)), int(rng.integers(-1, 2))), axis=(0, 1, 2))
    rel = f"masks/{stem}_{lesion_id}_r2.nii.gz"
    write_image(_store(_to_image(m.astype(np.uint8), canvas, np.uint8), centre), out / rel)
    return rel


def _plan_s3(truth: pd.DataFrame, rng: np.random.Generator) -> list[dict]:
    """Lesions, follow-ups and size changes of the longitudinal kind."""
    plans = []
    for _, row in truth.iterrows():
        n_follow = int(rng.choice([1, 2, 3, 4], p=[0.08, 0.50, 0.22, 0.20]))
        timepoints = list(range(n_follow + 1))
        rate = 0.22 * float(row["response"]) + 0.02
        def scales(jitter):
            return {t: float(np.clip(np.exp(-rate * t + rng.normal(0, jitter)), 0.25, 2.5)) for t in timepoints}
        lesions = []
        for i in range(int(rng.integers(1, 5))):
            site = "lymph_node" if rng.random() < 0.55 else "liver"
            # Nodes sit in perigastric fat, metastases in the right liver lobe (mm, LPS).
            centre = ((rng.uniform(-0.25, 0.35) * 150, rng.uniform(-0.35, 0.05) * 110, rng.uniform(0.35, 0.6) * HEIGHT_MM)
                      if site == "lymph_node" else
                      (rng.uniform(-0.75, -0.35) * 150, rng.uniform(-0.3, 0.3) * 110, rng.uniform(0.6, 0.85) * HEIGHT_MM))
            lesions.append({"lesion_id": f"{site}_{i + 1}", "site": site, "centre": centre,
                            "radius_mm": float(rng.uniform(6, 14) if site == "lymph_node" else rng.uniform(8, 20)),
                            "scales": scales(0.06)})
        plans.append({"timepoints": timepoints, "scales": scales(0.04), "lesions": lesions})
    return plans


def _draw_tables(kind: str, n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """The clinical and truth tables of a cohort, and S3's per-patient lesion plans: every random
    draw made before an image is rendered (the images use their own seeds)."""
    table_rng, plan_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    centres = _assign_centres(kind, n, table_rng)
    clinical, truth = draw_patients(kind, centres, table_rng)
    plans = _plan_s3(truth, plan_rng) if kind == "s3" else [{} for _ in range(n)]
    if kind == "s3":
        _add_markers_and_dates(clinical, truth, plans, table_rng)
    return clinical, truth, plans


def synthesize_tables(kind: str, *, n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``clinical.csv`` and ``truth.csv`` that :func:`synthesize` writes for ``kind``, ``n`` and
    ``seed``, without rendering an image: seconds instead of minutes, for what needs only the
    outcomes and the planted truth (the oracle and the latent ceilings of ``bench/deep_signal.py
    --truth-only``). S3 is refused: its RECIST columns are measured on the rendered lesions.
    ``truth`` lacks ``tumour_voxels`` (counted on the rendered masks)."""
    check_synth_args(kind, n)
    if kind == "s3":
        raise ValueError("synthesize_tables: S3's clinical table holds RECIST sums measured on the rendered "
                         "lesions; use synthesize()")
    clinical, truth, _ = _draw_tables(kind, n, seed)
    return clinical, truth


def check_synth_args(kind: str, n: int, roi: str | None = None) -> str:
    """Refuse an unknown kind, too few patients or an ROI the kind cannot draw (ValueError);
    return the ROI to draw."""
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic kind '{kind}'; choose one of {', '.join(KINDS)}")
    roi = roi or ROI_OF[kind]
    if roi not in ("slice", "volume") and roi != ROI_OF[kind]:
        raise ValueError(f"unknown ROI '{roi}'; choose slice or volume")
    if ROI_OF[kind] == "box" and roi != "box":
        raise ValueError(f"synthetic {kind} draws bounding boxes (as its paper); it has no '{roi}' ROI")
    if n < 4:
        raise ValueError("a synthetic study needs at least 4 patients")
    return roi


def synthesize(kind: str, folder: str | Path, *, n: int, seed: int = 0, dicom: bool = False, workers: int = 1,
               matrix_scale: float = 1.0, roi: str | None = None, progress=None) -> SynthResult:
    """Generate a synthetic study of ``kind`` (s1..s5) with ``n`` patients into ``folder``.

    ``roi`` chooses how the ROI masks are drawn: ``"slice"`` (the tumour's largest axial slice
    only) or ``"volume"`` (the whole tumour); default: the paper's (:data:`ROI_OF`). The images,
    tables and truth do not depend on it, so the same seed with either ROI gives the same
    patients. S3 (bounding boxes) keeps its boxes.
    ``progress`` (optional) is called with the number of patients done after each one.
    """
    roi = check_synth_args(kind, n, roi)
    t0 = time.perf_counter()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    patient_seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed + 7919).spawn(n)]
    clinical, truth, plans = _draw_tables(kind, n, seed)
    centres = clinical["center"].tolist()
    # S5: 30 patients of the split centre re-segmented by a second reading (for the ICC filter)
    resegment = set(np.flatnonzero(np.asarray(centres) == "A")[:30]) if kind == "s5" else set()
    tasks = []
    for i in range(n):
        tasks.append({"kind": kind, "patient_id": truth.loc[i, "patient_id"], "truth": truth.loc[i].to_dict(),
                      "bmi": float(clinical.loc[i, "bmi"]), "seed": patient_seeds[i], "folder": str(folder),
                      "dicom": dicom, "matrix_scale": matrix_scale, "resegment": i in resegment, "roi": roi,
                      **plans[i]})
    results = []
    if workers > 1:
        with process_pool(workers) as pool:
            for i, res in enumerate(pool.map(render_patient, tasks, chunksize=1)):
                results.append(res)
                if progress:
                    progress(i + 1)
    else:
        for i, task in enumerate(tasks):
            results.append(render_patient(task))
            if progress:
                progress(i + 1)
    manifest = pd.DataFrame([r for res in results for r in res["rows"]])
    truth["tumour_voxels"] = [res["extra"].get("tumour_voxels", 0) for res in results]
    if kind == "s3":
        _add_recist(clinical, manifest)
    _write_csv(manifest, folder / "manifest.csv")
    _write_csv(clinical, folder / "clinical.csv")
    _write_csv(truth, folder / "truth.csv")
    from gastrorad.synth.study_file import synthetic_study_yaml
    study_file = folder / "study.yaml"
    atomic_write_text(study_file, synthetic_study_yaml(kind, seed=seed, roi=roi))
    seconds = time.perf_counter() - t0
    atomic_write_text(folder / "synth.json", json.dumps({
        "kind": kind, "n": n, "seed": seed, "dicom": dicom, "matrix_scale": matrix_scale, "roi": roi,
        "centres": {c: int(k) for c, k in pd.Series(centres).value_counts().sort_index().items()},
    }, indent=2))
    return SynthResult(folder, study_file, n, len(manifest.drop_duplicates(["image"])), seconds)


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    atomic_write_text(path, df.to_csv(index=False))


def _add_markers_and_dates(clinical, truth, plans, rng) -> None:
    """S3: serial tumour markers per time point (wide columns) and an enrolment date."""
    # as in seed 002, serial markers were recorded at centre 1 (A) only
    has_markers = (clinical["center"] == "A").to_numpy()
    for marker, median in (("cea", 5.0), ("ca199", 30.0), ("ca724", 6.0)):
        base = np.exp(rng.normal(np.log(median), 1.0, len(clinical)))
        for t in range(5):
            vals = []
            for i, plan in enumerate(plans):
                if t in plan["timepoints"] and has_markers[i]:
                    vals.append(round(float(base[i] * plan["scales"][t] ** 1.2 * np.exp(rng.normal(0, 0.15))), 2))
                else:
                    vals.append(np.nan)
            clinical[f"{marker}_t{t}"] = vals
    days = rng.integers(0, 6 * 365, len(clinical))
    clinical["enrolled"] = (pd.Timestamp("2017-01-01") + pd.to_timedelta(np.sort(days), unit="D")).strftime("%Y-%m-%d")
    clinical["sex_male"] = (clinical["sex"] == "male").astype(int)


def _add_recist(clinical: pd.DataFrame, manifest: pd.DataFrame) -> None:
    """S3: baseline and follow-up sums of diameters of the target lesions."""
    sums = manifest.groupby(["patient_id", "timepoint"])["diameter_mm"].sum().unstack()
    for t in sums.columns:
        clinical[f"sld_t{t}"] = clinical["patient_id"].map(sums[t]).round(2)


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))
