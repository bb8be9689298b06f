"""Patch modes: how an ROI becomes a fixed-size network input. One file per mode.

Each mode is a function ``(PatchRequest) -> PatchSet`` registered by name, so a study
names its mode (``preprocess.patch.mode``) and a new mode is one new file:

- ``slice2d``   the largest-ROI slice (S5)
- ``stack25d``  the largest slice +/- k slices, optional mask channel (S1)
- ``volume3d``  the VOI as a 3D block or as its square 2D slices (S2)
- ``bbox``      1.5x box padded to square, adjacent slices as channels (S3)
- ``slices``    every slice in a z-range, for slice-level training (S4)
- ``roi_slices`` every slice a 3D ROI covers, each with its own mask (2D networks on whole-tumour masks)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import SimpleITK as sitk

from gastrorad.preprocess.roi import RoiInfo

PATCH_MODES: dict[str, Callable[["PatchRequest"], "PatchSet"]] = {}


@dataclass
class PatchRequest:
    """Everything a patch mode needs: the canonical HU image, the binary ROI mask on its
    grid, the ROI measured on the native grid and the study's preprocessing settings."""

    image: sitk.Image
    mask: sitk.Image
    roi: RoiInfo
    patch: object  # one of the PatchConfig models
    spacing: tuple[float, float, float] | None
    interpolation: str
    window: tuple[float, float]
    normalize: str

    @property
    def target_spacing(self) -> tuple[float, float, float]:
        return tuple(self.spacing) if self.spacing is not None else tuple(self.image.GetSpacing())


@dataclass
class PatchSet:
    """Patches of one image instance: ``array`` float32 and what its axes mean.

    Shapes: ``(C, H, W)`` for slice2d/stack25d/bbox, ``(1, D, H, W)`` for volume3d,
    ``(N, 1, H, W)`` for volume3d with ``as_slices`` and for slices (N patches of one channel),
    ``(N, C, H, W)`` for roi_slices (see :func:`holds_samples`). ``meta["sample_weights"]``, when
    present, weights the N samples when a patient's features are averaged.
    """

    array: np.ndarray
    channels: list[str]
    meta: dict = field(default_factory=dict)


def register_patch_mode(name: str):
    def deco(fn):
        PATCH_MODES[name] = fn
        return fn
    return deco


def holds_samples(array: np.ndarray, patch) -> bool:
    """Whether a patch array is a stack of N samples (N, C, H, W), each a network input of its
    own, rather than one input: ``slices``, ``volume3d`` with ``as_slices``, and ``roi_slices``."""
    if patch.mode == "roi_slices":
        return array.ndim == 4
    return array.ndim == 4 and array.shape[1] == 1 and patch.mode in ("slices", "volume3d") and \
        getattr(patch, "as_slices", True)


def get_patch_mode(name: str):
    try:
        return PATCH_MODES[name]
    except KeyError:
        raise KeyError(f"unknown patch mode '{name}'; known: {', '.join(sorted(PATCH_MODES))}") from None


# Register the built-in modes.
from gastrorad.preprocess.patches import bbox, roi_slices, slice2d, slices, stack25d, volume3d  # noqa: E402,F401
