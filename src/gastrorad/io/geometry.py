"""Image geometry: comparing grids and bringing every image to one orientation.

Downstream code always sees images in the DICOM patient frame orientation ``LPS``: the
array ``a[z, y, x]`` of :func:`SimpleITK.GetArrayFromImage` has x running to the patient's
left, y to posterior and z to superior, so ``a[k]`` shown with ``imshow`` is an axial
slice in radiological convention (patient's right on the viewer's left, anterior up).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

CANONICAL_ORIENTATION = "LPS"


@dataclass(frozen=True)
class Geometry:
    """Size (x, y, z), spacing (mm), origin (mm) and 3x3 direction (row-major) of a grid."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image | sitk.ImageFileReader) -> "Geometry":
        return cls(
            tuple(int(s) for s in image.GetSize()),
            tuple(float(s) for s in image.GetSpacing()),
            tuple(float(s) for s in image.GetOrigin()),
            tuple(float(s) for s in image.GetDirection()),
        )


def geometry_mismatch(
    image: Geometry, mask: Geometry, *, spacing_tol: float = 1e-3, origin_tol_mm: float = 1e-2,
    direction_tol: float = 1e-3,
) -> list[str]:
    """Reasons why ``mask`` does not lie on the grid of ``image`` (empty list: it does).

    Tolerances are relative for spacing, in mm for the origin (scaled by the spacing, as
    ITK's own coordinate tolerance) and absolute for direction cosines.
    """
    reasons: list[str] = []
    if image.size != mask.size:
        reasons.append(f"size {mask.size} differs from the image's {image.size}")
    sp_i, sp_m = np.asarray(image.spacing), np.asarray(mask.spacing)
    if sp_i.shape != sp_m.shape or np.any(np.abs(sp_i - sp_m) > spacing_tol * np.maximum(sp_i, 1e-6)):
        reasons.append(f"spacing {_fmt(mask.spacing)} differs from the image's {_fmt(image.spacing)}")
    o_i, o_m = np.asarray(image.origin), np.asarray(mask.origin)
    tol = max(origin_tol_mm, 0.5 * 1e-3 * float(np.max(sp_i)))
    if o_i.shape != o_m.shape or np.any(np.abs(o_i - o_m) > tol):
        reasons.append(f"origin {_fmt(mask.origin)} differs from the image's {_fmt(image.origin)}")
    d_i, d_m = np.asarray(image.direction), np.asarray(mask.direction)
    if d_i.shape != d_m.shape or np.any(np.abs(d_i - d_m) > direction_tol):
        reasons.append("direction cosines differ from the image's")
    return reasons


def to_canonical(image: sitk.Image) -> sitk.Image:
    """Reorient ``image`` to :data:`CANONICAL_ORIENTATION` (axis permutation and flips only)."""
    if image.GetDimension() != 3:
        return image
    if sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection()) == CANONICAL_ORIENTATION:
        return image
    return sitk.DICOMOrient(image, CANONICAL_ORIENTATION)


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def canonical_geometry(geom: Geometry) -> Geometry:
    """The geometry ``geom`` has after :func:`to_canonical`, computed from the header alone.

    Lets validation compare an image and its mask stored in different orientations (LPS
    DICOM, RAS NIfTI) without reading their voxels.
    """
    d = np.asarray(geom.direction, dtype=float).reshape(3, 3)  # columns = axis directions
    axis_for = np.argmax(np.abs(d), axis=0)  # which patient axis (L, P, S) each image axis follows
    if sorted(axis_for.tolist()) != [0, 1, 2]:
        return geom  # degenerate oblique orientation: leave as is
    order = np.argsort(axis_for)  # image axis that becomes new axis 0, 1, 2
    origin = np.asarray(geom.origin, dtype=float)
    size = np.asarray(geom.size)
    spacing = np.asarray(geom.spacing, dtype=float)
    new_dir = np.zeros((3, 3))
    for new_axis, old_axis in enumerate(order):
        col = d[:, old_axis]
        if col[axis_for[old_axis]] < 0:  # flip so the axis runs towards +L/+P/+S
            origin = origin + (size[old_axis] - 1) * spacing[old_axis] * col
            col = -col
        new_dir[:, new_axis] = col
    return Geometry(
        tuple(int(size[i]) for i in order),
        tuple(float(spacing[i]) for i in order),
        tuple(float(v) for v in origin),
        tuple(float(v) for v in new_dir.ravel()),
    )
