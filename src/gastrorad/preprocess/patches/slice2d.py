"""``slice2d``: the largest ROI slice as one channel (S5: a 224 mm square on the slice of
maximal cross-section, 1 mm B-spline resampling, per phase)."""

from __future__ import annotations

import numpy as np

from gastrorad.preprocess.intensity import apply_window, normalise
from gastrorad.preprocess.patches import PatchRequest, PatchSet, register_patch_mode
from gastrorad.preprocess.patches.stack25d import centred_stack, square_side_mm
from gastrorad.preprocess.roi import resize2d


@register_patch_mode("slice2d")
def slice2d(req: PatchRequest) -> PatchSet:
    p = req.patch
    side = square_side_mm(req)
    img, mask, grid = centred_stack(req, 0, side)
    low, high = req.window
    arrays = [normalise(resize2d(apply_window(img, low, high), p.size), req.normalize, low, high)]
    channels = ["slice+0"]
    if p.mask_channel:
        arrays.append(resize2d(mask, p.size, order=0))
        channels.append("mask")
    return PatchSet(np.concatenate(arrays, axis=0).astype(np.float32), channels,
                    {"side_mm": side, "largest_slice": req.roi.largest_slice, **grid})
