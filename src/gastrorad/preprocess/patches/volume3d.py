"""``volume3d``: the VOI as a 3D block, or as its stack of 2D slices (S2, Cao 2024: each VOI
slice zero-padded to a square and resized to 112x112, scaled to [-1, 1]). The block may carry
the ROI mask as a second channel (``mask_channel``), for deep features pooled inside the ROI.
With ``side_mm`` (and ``depth_mm``) the block is a fixed physical box around the ROI's centroid
instead of the VOI's box, so every patient's texture keeps one scale; choose ``size`` = box /
spacing to avoid resizing at all (resizing a thin tumour blends its rim with gas or fat).

Padding uses the window's lower bound, which is 0 after scaling to [0, 1] and -1 after
scaling to [-1, 1].
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from gastrorad.preprocess.intensity import apply_window, normalise
from gastrorad.preprocess.patches import PatchRequest, PatchSet, register_patch_mode
from gastrorad.preprocess.roi import grid_around, pad_to_square, resample_region, resize2d


def voi_grid(req: PatchRequest):
    """Grid covering the ROI's 3D box plus ``margin_mm`` on every side, at the target spacing;
    with ``side_mm``, a fixed block (side x side x depth mm) centred on the ROI's centroid."""
    sp = np.asarray(req.target_spacing)
    p = req.patch
    if getattr(p, "side_mm", None):
        extent_mm = np.array([p.side_mm, p.side_mm, p.depth_mm or p.side_mm], float)
        return grid_around(req.image, req.roi.centroid, np.maximum(1, np.round(extent_mm / sp)).astype(int), sp)
    src = np.asarray(req.image.GetSpacing())
    x0, y0, z0, x1, y1, z1 = req.roi.bbox
    lo, hi = np.array([x0, y0, z0], float), np.array([x1, y1, z1], float)
    extent_mm = (hi - lo + 1) * src + 2 * req.patch.margin_mm
    n = np.maximum(1, np.round(extent_mm / sp)).astype(int)
    return grid_around(req.image, (lo + hi) / 2, n, sp)


def resize_axis0(stack: np.ndarray, n: int) -> np.ndarray:
    """Linear resampling of ``stack`` along its first axis to ``n`` planes (pixel-centre aligned)."""
    if stack.shape[0] == n:
        return stack
    return ndimage.zoom(stack, (n / stack.shape[0],) + (1,) * (stack.ndim - 1), order=1, grid_mode=True, mode="nearest")


@register_patch_mode("volume3d")
def volume3d(req: PatchRequest) -> PatchSet:
    p = req.patch
    origin, size, spacing = voi_grid(req)
    img = resample_region(req.image, origin, size, spacing, interpolation=req.interpolation, default=-1024.0)
    low, high = req.window
    img = apply_window(img, low, high)
    meta = {"grid_origin_mm": list(origin), "grid_size": list(size), "grid_spacing_mm": list(spacing)}
    if p.as_slices:
        hw = p.size[-2:]
        out = resize2d(pad_to_square(img, low), hw)
        if len(p.size) == 3:
            out = resize_axis0(out, int(p.size[0]))
        out = normalise(out, req.normalize, low, high)[:, None]
        return PatchSet(out.astype(np.float32), ["slice"], meta)
    if len(p.size) != 3:
        raise ValueError("volume3d without as_slices needs size [D, H, W]")
    factors = [t / s for t, s in zip(p.size, img.shape)]
    out = ndimage.zoom(img, factors, order=1, grid_mode=True, mode="nearest")
    out = normalise(out, req.normalize, low, high)[None]
    if not p.mask_channel:
        return PatchSet(out.astype(np.float32), ["volume"], meta)
    mask = resample_region(req.mask, origin, size, spacing, interpolation="nearest", default=0.0)
    mask = ndimage.zoom((mask > 0).astype(np.float32), factors, order=0, grid_mode=True, mode="nearest")
    return PatchSet(np.concatenate([out, mask[None]]).astype(np.float32), ["volume", "mask"], meta)
