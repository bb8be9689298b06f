"""The input contract of the Merlin/Astra CT encoder, and the conversion from gastrorad patches.

What the pretrained network expects (Merlin's abdominal preprocessing, which Astra kept for
abdominal CT; ``merlin/data/monai_transforms.py`` in github.com/StanfordMIMI/Merlin):

====================  =====================================  =====================================
                      pretrained encoder                     gastrorad volume patch
====================  =====================================  =====================================
tensor layout         ``[B, 1, X, Y, Z]``                    ``[B, C, D, H, W]`` = ``[B, C, z, y, x]``
orientation           RAS: X to the patient's right,         LPS: x to the left, y posterior,
                      Y anterior, Z superior                 z superior (``gastrorad.io.geometry``)
spacing               1.5 x 1.5 x 3 mm (X, Y, Z)             ``preprocess.spacing`` (x, y, z)
intensity             HU window [-1000, 1000] -> 0..1,       window, then ``preprocess.normalize``
                      clipped                                (z-score, [-1, 1], [0, 1] or HU)
====================  =====================================  =====================================

Passing gastrorad's ``[B, C, D, H, W]`` unchanged would put the slice axis where the network
expects the left-right axis: its stem keeps full resolution along Z (stride 1) but halves X
and Y, and every kernel was learned with Z as depth. :func:`to_astra_input` permutes to
``(x, y, z)`` and flips x and y (L->R, P->A); :func:`from_astra_layout` brings feature maps
back to gastrorad's order (for Grad-CAM or spatial pooling).

Spacing is not changed here: to match the contract, resample to ``spacing: [1.5, 1.5, 3.0]``
and crop a fixed number of voxels (e.g. 32 x 64 x 64 = 96 mm cubed) rather than resizing each
lesion's box to a fixed size. The network runs on any size divisible by 32 in-plane and 16
along z; other sizes work with edge effects.

Astra's chest chain differs (foreground crop, resize to 224 x 224 x 160, window [-1000, 200]);
pass ``model_window=(-1000, 200)`` to mimic its intensities.
"""

from __future__ import annotations

import torch

MERLIN_WINDOW = (-1000.0, 1000.0)
"""HU range mapped to 0..1 by the pretrained encoder's preprocessing (abdominal CT)."""

MERLIN_SPACING_XYZ = (1.5, 1.5, 3.0)
"""Voxel spacing (mm, x/y/z) of the pretrained encoder's training volumes."""


def _to_hu(x: torch.Tensor, normalize: str, window: tuple[float, float]) -> torch.Tensor:
    lo, hi = float(window[0]), float(window[1])
    if normalize == "none":
        return x
    if normalize == "zero_one":
        return lo + x * (hi - lo)
    if normalize == "minus_one_one":
        return lo + (x + 1.0) * 0.5 * (hi - lo)
    if normalize == "zscore":
        # The patch's mean and SD are lost; assume its extremes are the window's bounds, which holds
        # when the windowed patch contains both clipped ends (air or fat and contrast or bone).
        dims = tuple(range(1, x.ndim))
        mn, mx = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
        return lo + (x - mn) / (mx - mn).clamp_min(1e-6) * (hi - lo)
    raise ValueError(f"unknown normalisation '{normalize}' (zero_one, minus_one_one, zscore or none)")


def to_astra_input(patch_dhw: torch.Tensor, *, normalize: str = "zero_one",
                   window: tuple[float, float] = MERLIN_WINDOW,
                   model_window: tuple[float, float] = MERLIN_WINDOW) -> torch.Tensor:
    """Convert gastrorad patches to the pretrained encoder's layout and intensity range.

    Args:
        patch_dhw: ``[B, C, D, H, W]`` volumes (or ``[B, C, H, W]`` axial slices) in gastrorad's
            canonical LPS arrays: D = z (superior), H = y (posterior), W = x (left).
        normalize: How the patch was normalised (``preprocess.normalize``): ``zero_one`` or
            ``minus_one_one`` over ``window``, ``none`` (HU) or ``zscore`` (approximate: the
            patch's minimum and maximum are taken as the window's bounds).
        window: The HU window the patch was clipped to (``preprocess.window``).
        model_window: The HU window the network sees as 0..1; the default ``(-1000, 1000)`` is
            the pretrained one. A narrower one (e.g. ``(-160, 240)``) raises soft-tissue
            contrast at the cost of a distribution shift.

    Returns:
        ``[B, C, X, Y, Z]`` (or ``[B, C, X, Y]``), RAS, values in 0..1.

    Example:
        >>> p = torch.zeros(1, 1, 4, 6, 8)  # D=4 slices, H=6 rows, W=8 columns
        >>> to_astra_input(p, normalize="zero_one", window=(-160, 240)).shape
        torch.Size([1, 1, 8, 6, 4])
    """
    if patch_dhw.ndim not in (4, 5):
        raise ValueError(f"expected [B, C, D, H, W] or [B, C, H, W], got shape {tuple(patch_dhw.shape)}")
    x = patch_dhw.float()
    if not (normalize == "zero_one" and tuple(map(float, window)) == tuple(map(float, model_window))):
        lo, hi = float(model_window[0]), float(model_window[1])
        x = (_to_hu(x, normalize, window) - lo) / (hi - lo)
    x = x.clamp(0.0, 1.0)
    x = x.permute(0, 1, 4, 3, 2) if x.ndim == 5 else x.permute(0, 1, 3, 2)  # (z, y, x) -> (x, y, z)
    return x.flip(2, 3)  # x: left -> right, y: posterior -> anterior


def from_astra_layout(maps: torch.Tensor) -> torch.Tensor:
    """Inverse layout change of :func:`to_astra_input` (no intensity change): ``[B, C, X, Y, Z]``
    RAS feature maps to gastrorad's ``[B, C, D, H, W]`` LPS (or the 2D equivalents)."""
    if maps.ndim not in (4, 5):
        raise ValueError(f"expected a 4D or 5D tensor, got shape {tuple(maps.shape)}")
    x = maps.flip(2, 3)
    return x.permute(0, 1, 4, 3, 2) if x.ndim == 5 else x.permute(0, 1, 3, 2)
