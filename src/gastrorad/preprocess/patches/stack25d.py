"""``stack25d``: the largest ROI slice +/- k neighbours as channels, plus the mask (S1).

S1 (Zhang 2022): after resampling to 1 mm, the slice with the largest tumour and five
slices above and below (11 CT channels) plus the ROI mask (channel 12), cut as a square
centred on the ROI centroid whose side follows the tumour's extent, resized to the
network size, z-scored per patch.
"""

from __future__ import annotations

import numpy as np

from gastrorad.preprocess.intensity import apply_window, normalise
from gastrorad.preprocess.patches import PatchRequest, PatchSet, register_patch_mode
from gastrorad.preprocess.roi import grid_around, resample_region, resize2d


def square_side_mm(req: PatchRequest) -> float:
    """Side of the square: fixed ``side_mm``, else ``square_scale`` x the ROI's larger
    in-plane extent on its largest slice plus ``margin_mm`` on each side."""
    p = req.patch
    if getattr(p, "side_mm", None):
        return float(p.side_mm)
    return float(p.square_scale * max(req.roi.extent_mm) + 2 * p.margin_mm)


def centred_stack(req: PatchRequest, k: int, side_mm: float):
    """Resampled image and mask stacks (2k+1, n, n) centred on the ROI centroid."""
    sp = req.target_spacing
    nx, ny = max(2, int(round(side_mm / sp[0]))), max(2, int(round(side_mm / sp[1])))
    # the middle plane is the ROI's own slice (S1, S5: the ROI is drawn on that one slice)
    origin, size, spacing = grid_around(req.image, req.roi.centroid, (nx, ny, 2 * k + 1), sp, snap_z=False)
    img = resample_region(req.image, origin, size, spacing, interpolation=req.interpolation, default=-1024.0)
    mask = resample_region(req.mask, origin, size, spacing, interpolation="nearest", default=0.0)
    return img, mask, {"grid_origin_mm": list(origin), "grid_size": list(size), "grid_spacing_mm": list(spacing)}


@register_patch_mode("stack25d")
def stack25d(req: PatchRequest) -> PatchSet:
    p = req.patch
    k = p.context_slices
    side = square_side_mm(req)
    img, mask, grid = centred_stack(req, k, side)
    low, high = req.window
    ct = normalise(resize2d(apply_window(img, low, high), p.size), req.normalize, low, high)
    channels = [f"slice{j:+d}" for j in range(-k, k + 1)]
    arrays = [ct]
    if p.mask_channel:
        arrays.append(resize2d(mask[k:k + 1], p.size, order=0))
        channels.append("mask")
    return PatchSet(np.concatenate(arrays, axis=0).astype(np.float32), channels,
                    {"side_mm": side, "largest_slice": req.roi.largest_slice, **grid})
