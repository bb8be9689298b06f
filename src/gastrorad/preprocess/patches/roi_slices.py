"""``roi_slices``: every axial slice a 3D ROI covers, each cut as ``slice2d`` cuts the largest
one: a square around that slice's own ROI centroid, its own mask as a channel.

For whole-tumour (3D) masks read by a 2D network: each slice is one sample, and a patient's
deep features are the ROI-area-weighted mean over its slices (``meta["sample_weights"]``: the
ROI pixels of each slice), so every ROI voxel counts once, as 3D ROI pooling would count it.
Every slice stays on its own plane (no blend with its neighbours in z), and one square side
(``side_mm``, else from the largest slice's extent) keeps the texture at one scale across a
patient's slices. A single-slice ROI gives one sample, the ``slice2d`` patch.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import SimpleITK as sitk

from gastrorad.preprocess.patches import PatchRequest, PatchSet, register_patch_mode
from gastrorad.preprocess.patches.slice2d import slice2d
from gastrorad.preprocess.patches.stack25d import square_side_mm
from gastrorad.preprocess.roi import roi_from_mask


@register_patch_mode("roi_slices")
def roi_slices(req: PatchRequest) -> PatchSet:
    from gastrorad.config.study import Slice2DPatch
    p = req.patch
    side = square_side_mm(req)  # fixed side_mm, else from the largest slice's extent: one scale per patient
    one = Slice2DPatch(size=list(p.size), margin_mm=p.margin_mm, side_mm=side, mask_channel=p.mask_channel)
    mask = sitk.GetArrayViewFromImage(req.mask) != 0
    planes = [int(z) for z in np.flatnonzero(mask.any(axis=(1, 2)))]
    arrays, pixels, channels = [], [], None
    for z in planes:
        only = np.zeros_like(mask)
        only[z] = mask[z]
        roi = roi_from_mask(only, req.image.GetSpacing())
        ps = slice2d(dataclasses.replace(req, roi=roi, patch=one))
        arrays.append(ps.array)
        pixels.append(int(mask[z].sum()))
        channels = ps.channels
    return PatchSet(np.stack(arrays).astype(np.float32), channels,
                    {"side_mm": side, "slices": planes, "sample_weights": pixels,
                     "largest_slice": req.roi.largest_slice})
