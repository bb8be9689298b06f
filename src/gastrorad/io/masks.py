"""Reading ROI masks onto the grid of their CT image.

A mask reference is one of:

- a label image (NIfTI/NRRD/MHA), optionally ``file#3`` to keep label 3 only (default: any
  non-zero label). It must lie on the image's grid (size, spacing, origin, direction).
- a DICOM SEG object, optionally ``seg.dcm#<segment label or number>``;
- a DICOM RTSTRUCT, ``rtstruct.dcm#<ROI name>`` (the name is required when it holds several).

Whatever the source, the result is a binary ``uint8`` :class:`SimpleITK.Image` on the
reference image's (canonical) grid. SEG frames and RTSTRUCT contours are placed by their
patient coordinates, so they need not follow the image's slice order or orientation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from matplotlib.path import Path as PolygonPath

from gastrorad.errors import InputError, Problem
from gastrorad.io.geometry import Geometry, geometry_mismatch
from gastrorad.io.images import is_image_file, read_image, split_reference


def read_mask(ref: str | Path, reference: sitk.Image) -> sitk.Image:
    """Read mask ``ref`` as a binary uint8 image on the grid of ``reference``.

    Raises :class:`InputError` for a missing or unreadable file, a label image whose
    geometry differs from the image's, a missing structure, or an empty result.
    """
    path, selector = split_reference(ref)
    if not path.exists():
        raise InputError(Problem(str(path), "mask file does not exist"))
    if path.is_dir():
        path = _find_dicom_object(path)
    if is_image_file(path):
        mask = _read_label_image(path, selector, reference)
    else:
        try:
            ds = pydicom.dcmread(path)
        except Exception as exc:
            raise InputError(Problem(str(path), f"unreadable mask (neither an image nor DICOM): {exc}")) from exc
        modality = str(ds.get("Modality", "")).upper()
        if modality == "SEG":
            mask = _seg_to_grid(ds, selector, reference, path)
        elif modality == "RTSTRUCT":
            mask = _rtstruct_to_grid(ds, selector, reference, path)
        else:
            raise InputError(Problem(str(path), f"DICOM mask must be SEG or RTSTRUCT, found modality '{modality}'"))
    if not np.any(sitk.GetArrayViewFromImage(mask)):
        raise InputError(Problem(str(ref), "mask is empty (no ROI voxel)"))
    return mask


def _find_dicom_object(folder: Path) -> Path:
    for p in sorted(folder.iterdir()):
        if p.is_file():
            try:
                ds = pydicom.dcmread(p, stop_before_pixels=True)
            except Exception:
                continue
            if str(ds.get("Modality", "")).upper() in {"SEG", "RTSTRUCT"}:
                return p
    raise InputError(Problem(str(folder), "no DICOM SEG or RTSTRUCT file in mask folder"))


def _read_label_image(path: Path, selector: str | None, reference: sitk.Image) -> sitk.Image:
    labels = read_image(path, float32=False)
    reasons = geometry_mismatch(Geometry.of(reference), Geometry.of(labels))
    if reasons:
        raise InputError(Problem(str(path), "mask does not lie on the image grid: " + "; ".join(reasons)))
    arr = sitk.GetArrayViewFromImage(labels)
    if selector is not None:
        try:
            value = float(selector)
        except ValueError as exc:
            raise InputError(Problem(str(path), f"label selector '#{selector}' is not a number")) from exc
        binary = np.abs(arr - value) < 0.5
    elif np.issubdtype(arr.dtype, np.integer):
        binary = arr != 0  # any non-zero label (negative ones too) is the ROI
    else:
        binary = np.abs(arr) > 0.5
    out = sitk.GetImageFromArray(binary.view(np.uint8))
    out.CopyInformation(reference)
    return out


def _physical_to_index(points: np.ndarray, reference: sitk.Image) -> np.ndarray:
    """Continuous (x, y, z) indices of patient points (n, 3) on ``reference``'s grid."""
    d = np.asarray(reference.GetDirection()).reshape(3, 3)
    m = d @ np.diag(reference.GetSpacing())
    return np.linalg.solve(m, (points - np.asarray(reference.GetOrigin())).T).T


def _empty_like(reference: sitk.Image) -> np.ndarray:
    x, y, z = reference.GetSize()
    return np.zeros((z, y, x), dtype=np.uint8)


def _to_image(arr: np.ndarray, reference: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(reference)
    return out


def _seg_to_grid(ds: pydicom.Dataset, selector: str | None, reference: sitk.Image, path: Path) -> sitk.Image:
    segments = {int(s.SegmentNumber): str(s.get("SegmentLabel", "")) for s in ds.SegmentSequence}
    if selector is None:
        wanted = set(segments)
    elif selector.isdigit() and int(selector) in segments:
        wanted = {int(selector)}
    else:
        wanted = {n for n, lab in segments.items() if lab == selector}
        if not wanted:
            raise InputError(Problem(str(path), f"segment '{selector}' not found; the SEG holds {sorted(segments.values())}"))
    shared = ds.SharedFunctionalGroupsSequence[0]
    frames = ds.pixel_array
    if frames.ndim == 2:
        frames = frames[None]
    out = _empty_like(reference)
    size = np.asarray(reference.GetSize())
    for i, fg in enumerate(ds.PerFrameFunctionalGroupsSequence):
        # Functional groups sit per frame or, when equal for all frames, in the shared group.
        number = int(_group(fg, shared, "SegmentIdentificationSequence").ReferencedSegmentNumber)
        if number not in wanted:
            continue
        r, c = np.nonzero(frames[i])
        if r.size == 0:
            continue
        orient = np.asarray(_group(fg, shared, "PlaneOrientationSequence").ImageOrientationPatient, dtype=float)
        row_dir, col_dir = orient[:3], orient[3:]
        spacing = np.asarray(_group(fg, shared, "PixelMeasuresSequence").PixelSpacing, dtype=float)  # (row, col)
        pos = np.asarray(_group(fg, shared, "PlanePositionSequence").ImagePositionPatient, dtype=float)
        pts = pos + np.outer(c * spacing[1], row_dir) + np.outer(r * spacing[0], col_dir)
        idx = np.rint(_physical_to_index(pts, reference)).astype(int)
        inside = np.all((idx >= 0) & (idx < size), axis=1)
        if not np.all(inside):
            raise InputError(Problem(str(path), f"SEG frame {i + 1} lies partly outside the image volume"))
        out[idx[:, 2], idx[:, 1], idx[:, 0]] = 1
    return _to_image(out, reference)


def _group(frame: pydicom.Dataset, shared: pydicom.Dataset, name: str) -> pydicom.Dataset:
    seq = frame.get(name) or shared.get(name)
    if not seq:
        raise InputError(Problem("SEG", f"functional group {name} missing"))
    return seq[0]


def rtstruct_roi_names(ds: pydicom.Dataset) -> dict[int, str]:
    """ROI number -> ROI name of an RTSTRUCT dataset."""
    return {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}


def _rtstruct_to_grid(ds: pydicom.Dataset, selector: str | None, reference: sitk.Image, path: Path) -> sitk.Image:
    names = rtstruct_roi_names(ds)
    if selector is None:
        if len(names) != 1:
            raise InputError(Problem(str(path), "RTSTRUCT holds several structures; name one with "
                                     f"'<file>#<ROI name>': {sorted(names.values())}"))
        number = next(iter(names))
    else:
        matches = [n for n, name in names.items() if name == selector]
        if not matches:
            raise InputError(Problem(str(path), f"structure '{selector}' not found; the RTSTRUCT holds {sorted(names.values())}"))
        number = matches[0]
    contours = [c for c in ds.ROIContourSequence if int(c.ReferencedROINumber) == number]
    out = _empty_like(reference)
    nz, ny, nx = out.shape
    for roi in contours:
        for contour in roi.get("ContourSequence", []):
            pts = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
            idx = _physical_to_index(pts, reference)
            k = int(np.rint(np.mean(idx[:, 2])))
            if not 0 <= k < nz:
                raise InputError(Problem(str(path), f"a contour of '{names[number]}' lies outside the image volume (slice {k})"))
            x0, x1 = max(int(np.floor(idx[:, 0].min())), 0), min(int(np.ceil(idx[:, 0].max())), nx - 1)
            y0, y1 = max(int(np.floor(idx[:, 1].min())), 0), min(int(np.ceil(idx[:, 1].max())), ny - 1)
            if x1 < x0 or y1 < y0:
                continue
            yy, xx = np.mgrid[y0:y1 + 1, x0:x1 + 1]
            inside = PolygonPath(idx[:, :2]).contains_points(np.column_stack([xx.ravel(), yy.ravel()]))
            # Even-odd rule: a contour inside another on the same slice is a hole.
            out[k, y0:y1 + 1, x0:x1 + 1] ^= inside.reshape(yy.shape).astype(np.uint8)
    return _to_image(out, reference)
