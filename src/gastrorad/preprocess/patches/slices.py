"""``slices``: every axial slice in the ROI's z-range, each a whole (body-cropped) slice
padded to square and resized (S4, Han 2025: slice-level training, resize 256, random crop
224 at training time). The patient's label applies to every slice."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from gastrorad.preprocess.intensity import apply_window, normalise
from gastrorad.preprocess.patches import PatchRequest, PatchSet, register_patch_mode
from gastrorad.preprocess.roi import grid_around, pad_to_square, resample_region, resize2d

BODY_HU = -500.0  # voxels above this are body (soft tissue, bone), below it air


@register_patch_mode("slices")
def slices(req: PatchRequest) -> PatchSet:
    p = req.patch
    sp = np.asarray(req.target_spacing)
    src = np.asarray(req.image.GetSpacing())
    size = np.asarray(req.image.GetSize())
    x0, y0, z0, x1, y1, z1 = req.roi.bbox
    z0, z1 = max(z0 - p.extra_slices, 0), min(z1 + p.extra_slices, int(size[2]) - 1)
    if p.crop_to_body:


        sub = sitk.GetArrayViewFromImage(req.image)[z0:z1 + 1]
        body = np.argwhere((sub > BODY_HU).any(axis=0))
        if body.size:
            (y0, x0), (y1, x1) = body.min(axis=0), body.max(axis=0)
        else:
            x0, y0, x1, y1 = 0, 0, int(size[0]) - 1, int(size[1]) - 1
    else:
        x0, y0, x1, y1 = 0, 0, int(size[0]) - 1, int(size[1]) - 1
    lo, hi = np.array([x0, y0, z0], float), np.array([x1, y1, z1], float)
    n = np.maximum(1, np.round((hi - lo + 1) * src / sp)).astype(int)
    origin, gsize, spacing = grid_around(req.image, (lo + hi) / 2, n, sp)
    img = resample_region(req.image, origin, gsize, spacing, interpolation=req.interpolation, default=-1024.0)
    low, high = req.window
    img = apply_window(img, low, high)
    out = resize2d(pad_to_square(img, low), p.size)
    out = np.stack([normalise(s, req.normalize, low, high) for s in out])[:, None]
    return PatchSet(out.astype(np.float32), ["slice"], {"z_range": [int(z0), int(z1)], "grid_origin_mm": list(origin),
                                                        "grid_size": list(gsize), "grid_spacing_mm": list(spacing)})
