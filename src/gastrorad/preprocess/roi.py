"""The ROI on the native grid, and ROI-first resampling onto a small output grid.

A patch never needs the whole CT resampled: each patch mode describes the output grid
it needs (centre, size, spacing) from the ROI measured on the native grid, and
:func:`resample_region` crops the input to that region (plus the interpolator's support)
before resampling it. A 512x512x300 CT is therefore never resampled whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

INTERPOLATORS = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline, "nearest": sitk.sitkNearestNeighbor}


@dataclass(frozen=True)
class RoiInfo:
    """An ROI measured on the image's native (canonical) grid, in continuous indices (x, y, z).

    ``largest_slice`` is the axial slice with the most ROI voxels (the first of ties);
    ``centroid`` is the ROI's centroid on that slice; ``extent_mm`` its in-plane extent
    (x, y) there; ``bbox`` the ROI's index box over all slices (x0, y0, z0, x1, y1, z1).
    """

    largest_slice: int
    centroid: tuple[float, float, float]
    extent_mm: tuple[float, float]
    bbox: tuple[int, int, int, int, int, int]
    voxels: int


def roi_from_mask(mask: np.ndarray, spacing) -> RoiInfo:
    """Measure a binary mask array ``mask[z, y, x]``; raise ValueError when empty."""
    # the ROI's box first (three reductions), then its voxels inside the box only: an ROI fills a
    # small part of a 512 x 512 x n volume, and listing every voxel of the volume was the slow part
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    if zs.size == 0:
        raise ValueError("empty mask (no ROI voxel)")
    block = mask[zs[0]:zs[-1] + 1]
    ys, xs = np.flatnonzero(block.any(axis=(0, 2))), np.flatnonzero(block.any(axis=(0, 1)))
    idx = np.argwhere(block[:, ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]) + np.array([zs[0], ys[0], xs[0]])
    areas = np.bincount(idx[:, 0], minlength=mask.shape[0])  # first-largest slice, as before
    k = int(np.argmax(areas))
    sl = idx[idx[:, 0] == k]
    cy, cx = sl[:, 1].mean(), sl[:, 2].mean()
    ext = ((sl[:, 2].max() - sl[:, 2].min() + 1) * spacing[0], (sl[:, 1].max() - sl[:, 1].min() + 1) * spacing[1])
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    return RoiInfo(k, (float(cx), float(cy), float(k)), (float(ext[0]), float(ext[1])),
                   (int(lo[2]), int(lo[1]), int(lo[0]), int(hi[2]), int(hi[1]), int(hi[0])), int(len(idx)))


def roi_from_bbox(box_xyz: tuple[int, ...], spacing) -> RoiInfo:
    """An ROI given as an index box (x0, y0, z0, x1, y1, z1) on the canonical grid."""
    x0, y0, z0, x1, y1, z1 = box_xyz
    k = int(round((z0 + z1) / 2))
    return RoiInfo(k, ((x0 + x1) / 2, (y0 + y1) / 2, float(k)),
                   ((x1 - x0 + 1) * spacing[0], (y1 - y0 + 1) * spacing[1]),
                   (x0, y0, z0, x1, y1, z1), int((x1 - x0 + 1) * (y1 - y0 + 1) * (z1 - z0 + 1)))


def grid_around(image: sitk.Image, centre_index, size_vox, spacing, *, snap_z: bool = True) -> tuple[tuple, tuple, tuple]:
    """Output grid (origin, size, spacing) of ``size_vox`` voxels at ``spacing`` mm around the
    continuous index ``centre_index`` of ``image``, axis-aligned with the image.

    The grid is snapped to the lattice that resampling the whole volume to ``spacing``
    would produce (anchored at the image's first voxel), so a patch is exactly a crop of
    the conventional whole-volume result, and at the native spacing no interpolation
    happens at all. The ROI centre lies within half a target voxel of the patch centre.

    ``snap_z=False`` centres the grid's middle plane exactly on ``centre_index``'s z instead
    (for single-slice ROIs: the annotated slice itself, not a blend of it with its neighbour,
    which a 1 mm lattice over 2.5 mm slices would give for every other slice).
    """
    src = np.asarray(image.GetSpacing(), dtype=float)
    spacing = np.asarray(spacing, dtype=float)
    size_vox = np.asarray(size_vox, dtype=int)
    centre_on_lattice = np.asarray(centre_index, dtype=float) * src / spacing
    first = np.round(centre_on_lattice - (size_vox - 1) / 2.0)
    if not snap_z:
        first[2] = centre_on_lattice[2] - (size_vox[2] - 1) / 2.0
    origin_index = first * spacing / src
    origin = image.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in origin_index))
    return tuple(origin), tuple(int(v) for v in size_vox), tuple(float(v) for v in spacing)


def resample_region(image: sitk.Image, origin, size, spacing, *, interpolation: str = "linear",
                    default: float = -1024.0) -> np.ndarray:
    """Resample ``image`` onto the grid (origin, size, spacing, image's direction) and return
    the array ``[z, y, x]``. The input is first cropped to the region the grid covers plus
    the interpolator's support; voxels outside the image take ``default``."""
    direction = image.GetDirection()
    size = tuple(int(s) for s in size)
    corners = []
    for cx in (0, size[0] - 1):
        for cy in (0, size[1] - 1):
            for cz in (0, size[2] - 1):
                p = np.asarray(origin) + np.asarray(direction).reshape(3, 3) @ (np.array([cx, cy, cz]) * np.asarray(spacing))
                corners.append(image.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in p)))
    corners = np.asarray(corners)
    # B-spline coefficients depend on neighbours through a recursive prefilter whose
    # influence falls as 0.268^d: 8 voxels of context make the crop invisible (< 1e-4 of SD).
    support = 8 if interpolation == "bspline" else 1
    lo = np.floor(corners.min(axis=0)).astype(int) - support
    hi = np.ceil(corners.max(axis=0)).astype(int) + support
    img_size = np.asarray(image.GetSize())
    lo_c, hi_c = np.clip(lo, 0, img_size - 1), np.clip(hi, 0, img_size - 1)
    out_shape = (size[2], size[1], size[0])
    if np.any(hi < 0) or np.any(lo > img_size - 1):
        return np.full(out_shape, default, dtype=np.float32)  # grid entirely outside the image
    region = sitk.RegionOfInterest(image, [int(v) for v in hi_c - lo_c + 1], [int(v) for v in lo_c])
    out = sitk.Resample(region, size, sitk.Transform(), INTERPOLATORS[interpolation], tuple(origin),
                        tuple(spacing), direction, float(default), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def resize2d(stack: np.ndarray, size, *, order: int = 1, pad_value: float = 0.0) -> np.ndarray:
    """Resize each 2D plane of ``stack[..., H, W]`` to ``size`` (H, W).

    Pixel-centre aligned (as ``align_corners=False``); ``order`` 1 = bilinear (images),
    0 = nearest (masks).
    """
    from scipy import ndimage

    h, w = stack.shape[-2:]
    H, W = int(size[0]), int(size[1])
    if (h, w) == (H, W):
        return stack.astype(np.float32, copy=True)
    yy = (np.arange(H) + 0.5) * h / H - 0.5
    xx = (np.arange(W) + 0.5) * w / W - 0.5
    gy, gx = np.meshgrid(yy, xx, indexing="ij")
    flat = stack.reshape(-1, h, w)
    out = np.empty((flat.shape[0], H, W), dtype=np.float32)
    for i, plane in enumerate(flat):
        out[i] = ndimage.map_coordinates(plane.astype(np.float32), [gy, gx], order=order, mode="nearest")
    return out.reshape(*stack.shape[:-2], H, W)


def pad_to_square(stack: np.ndarray, value: float) -> np.ndarray:
    """Pad the last two axes symmetrically to a square (the short side to the long one)."""
    h, w = stack.shape[-2:]
    n = max(h, w)
    top, left = (n - h) // 2, (n - w) // 2
    pad = [(0, 0)] * (stack.ndim - 2) + [(top, n - h - top), (left, n - w - left)]
    return np.pad(stack, pad, mode="constant", constant_values=value)
