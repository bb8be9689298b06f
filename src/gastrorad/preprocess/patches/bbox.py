"""``bbox``: a lesion box scaled (1.5x), padded symmetrically to the enclosing square,
resized, with the slices above and below as channels (S3, He 2024: 224x224x3)."""

from __future__ import annotations

import numpy as np

from gastrorad.preprocess.intensity import apply_window, normalise
from gastrorad.preprocess.patches import PatchRequest, PatchSet, register_patch_mode
from gastrorad.preprocess.roi import grid_around, resample_region, resize2d


@register_patch_mode("bbox")
def bbox(req: PatchRequest) -> PatchSet:
    p = req.patch
    sp = req.target_spacing
    w, h = (e * p.box_scale for e in req.roi.extent_mm)
    side = max(w, h)  # symmetric padding of the scaled box to its circumscribed square
    k = p.context_slices
    n = (max(2, int(round(side / sp[0]))), max(2, int(round(side / sp[1]))), 2 * k + 1)
    origin, size, spacing = grid_around(req.image, req.roi.centroid, n, sp, snap_z=False)  # the box's own slice
    img = resample_region(req.image, origin, size, spacing, interpolation=req.interpolation, default=-1024.0)
    low, high = req.window
    out = normalise(resize2d(apply_window(img, low, high), p.size), req.normalize, low, high)
    return PatchSet(out.astype(np.float32), [f"slice{j:+d}" for j in range(-k, k + 1)],
                    {"side_mm": side, "box_mm": [w / p.box_scale, h / p.box_scale], "grid_origin_mm": list(origin),
                     "grid_size": list(size), "grid_spacing_mm": list(spacing)})
