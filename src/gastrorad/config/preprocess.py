"""The study file's ``preprocess:`` section (patch making): the HU window (:class:`WindowConfig`, also
used by ``radiomics.window``), the patch modes (slice2d, stack25d, volume3d, bbox, slices,
roi_slices) and their discriminated union :data:`PatchConfig`, and :class:`PreprocessConfig`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from gastrorad.config.base import Strict


class WindowConfig(Strict):
    """A HU window as a range (low/high) or as level/width."""

    low: float | None = Field(None, description="Lower bound in HU (with high); lower values are clipped to it.")
    high: float | None = Field(None, description="Upper bound in HU (with low); higher values are clipped to it.")
    level: float | None = Field(None, description="Window centre in HU (with width): the range is level +/- width/2.")
    width: float | None = Field(None, description="Window width in HU (with level).")

    @model_validator(mode="after")
    def _one_form(self) -> "WindowConfig":
        as_range = self.low is not None and self.high is not None
        as_lw = self.level is not None and self.width is not None
        if as_range == as_lw:
            raise ValueError("give a window as low/high or as level/width (exactly one form)")
        if self.bounds[1] <= self.bounds[0]:
            raise ValueError("window high must exceed low (width > 0)")
        return self

    @property
    def bounds(self) -> tuple[float, float]:
        if self.low is not None and self.high is not None:
            return float(self.low), float(self.high)
        return float(self.level - self.width / 2), float(self.level + self.width / 2)


class _PatchBase(Strict):
    size: list[int] = Field(default_factory=lambda: [224, 224],
                            description="Output size (H, W), or (D, H, W) for volume3d.")
    margin_mm: float = Field(10.0, ge=0, description="Context kept around the ROI when cropping before resampling.")


class Slice2DPatch(_PatchBase):
    """The largest-ROI slice, a square around the ROI centroid (S5: fixed 224 mm side)."""

    mode: Literal["slice2d"] = Field("slice2d", description="slice2d: one channel, the largest ROI slice (S5).")
    side_mm: float | None = Field(None, gt=0, description="Fixed square side in mm; default: from the ROI's extent.")
    square_scale: float = Field(1.0, gt=0, description="Side = scale x the ROI's larger in-plane extent "
                                                       "(if no side_mm).")
    mask_channel: bool = Field(False, description="Add the ROI mask as a second channel (needed by the ROI poolings "
                                                  "of features.pooling).")


class Stack25DPatch(_PatchBase):
    """Largest slice +/- context_slices as channels, optional mask channel (S1: 11 + 1 = 12)."""

    mode: Literal["stack25d"] = Field("stack25d", description="stack25d: the largest ROI slice and its neighbours "
                                                              "as channels (S1).")
    context_slices: int = Field(5, ge=0, description="Slices taken above and below the largest one.")
    mask_channel: bool = Field(True, description="Add the largest slice's ROI mask as the last channel (S1: channel "
                                                 "12).")
    side_mm: float | None = Field(None, gt=0, description="Fixed square side in mm; default: from the ROI's extent.")
    square_scale: float = Field(1.0, gt=0, description="Side = scale x the ROI's larger in-plane extent on its "
                                                       "largest slice, plus margin_mm each side (if no side_mm).")


class Volume3DPatch(_PatchBase):
    """The VOI as a 3D block, or as its stack of square 2D slices (S2: 112x112 per slice)."""

    mode: Literal["volume3d"] = Field("volume3d", description="volume3d: the VOI as a 3D block, or its stack of "
                                                              "2D slices (S2).")
    as_slices: bool = Field(False, description="Return each VOI slice padded to square and resized (S2).")
    size: list[int] = Field(default_factory=lambda: [32, 112, 112], description=(
        "Block size [D, H, W] the VOI is resized to; with as_slices, [H, W] per slice (S2: 112 x 112), or "
        "[D, H, W] to also resample the stack to D slices."))
    mask_channel: bool = Field(False, description="Add the ROI mask as a second channel of the 3D block "
                                                  "(for ROI-pooled deep features; not with as_slices).")
    side_mm: float | None = Field(None, gt=0, description="Fixed block instead of the VOI: side_mm square in-plane "
                                                         "around the ROI's centroid (on its largest slice).")
    depth_mm: float | None = Field(None, gt=0, description="The fixed block's extent in z (default: side_mm).")

    @model_validator(mode="after")
    def _mask_needs_block(self) -> "Volume3DPatch":
        if self.mask_channel and self.as_slices:
            raise ValueError("volume3d: mask_channel needs the 3D block (as_slices: false)")
        if self.depth_mm is not None and self.side_mm is None:
            raise ValueError("volume3d: depth_mm needs side_mm (the fixed block's in-plane side)")
        return self


class BBoxPatch(_PatchBase):
    """Box scaled 1.5x, padded symmetrically to square, adjacent slices as channels (S3)."""

    mode: Literal["bbox"] = Field("bbox", description="bbox: the scaled lesion box and its neighbouring slices (S3).")
    box_scale: float = Field(1.5, gt=0, description="Factor on the lesion box's in-plane extent before it is padded "
                                                    "to its square (S3: 1.5).")
    context_slices: int = Field(1, ge=0, description="Slices above and below the box slice (1 -> 3 channels).")


class SlicesPatch(_PatchBase):
    """Every slice in the ROI's z-range (S4 slice-level training), each resized whole."""

    mode: Literal["slices"] = Field("slices", description="slices: every slice of the ROI's z-range, one sample "
                                                          "each (S4).")
    extra_slices: int = Field(0, ge=0, description="Extra slices kept above and below the ROI's z-range.")
    crop_to_body: bool = Field(True, description="Crop each slice to the body before resizing.")
    size: list[int] = Field(default_factory=lambda: [256, 256], description=(
        "Size (H, W) each whole slice is resized to (S4: 256 x 256, then augment.random_crop 224 x 224)."))


class RoiSlicesPatch(_PatchBase):
    """Every slice a 3D ROI covers, each a slice2d patch around its own ROI centroid with its own
    mask; a patient's deep features are the ROI-area-weighted mean over them."""

    mode: Literal["roi_slices"] = Field("roi_slices", description="roi_slices: every slice a 3D ROI covers, each "
                                                                  "a slice2d patch, one sample each.")
    side_mm: float | None = Field(None, gt=0, description="Fixed square side in mm; default: from the largest "
                                                         "slice's extent (one side for all of a patient's slices).")
    square_scale: float = Field(1.0, gt=0, description="Side = scale x the largest slice's ROI extent (if no side_mm).")
    mask_channel: bool = Field(True, description="Add each slice's own ROI mask as a second channel (needed by the "
                                                 "ROI poolings of features.pooling).")


PatchConfig = Annotated[Union[Slice2DPatch, Stack25DPatch, Volume3DPatch, BBoxPatch, SlicesPatch, RoiSlicesPatch],
                        Field(discriminator="mode")]


class PreprocessConfig(Strict):
    """Patch making (``gastrorad preprocess``): resampling, HU window, intensity scaling and the patch mode, for
    each phase."""

    phases: list[str] = Field(default_factory=lambda: ["venous"], description="Phases used; one patch set each.")
    spacing: list[float] | None = Field(default_factory=lambda: [1.0, 1.0, 1.0],
                                        description="Target spacing (x, y, z) in mm; null keeps the native grid.")
    interpolation: Literal["linear", "bspline", "nearest"] = Field("linear", description="Image interpolation "
                                                                                         "(masks: nearest).")
    window: WindowConfig = Field(default_factory=lambda: WindowConfig(low=-350, high=450))
    windows_by_site: dict[str, WindowConfig] = Field(default_factory=dict,
                                                     description="Lesion site -> window (S3: lung, abdomen).")
    normalize: Literal["zscore", "minus_one_one", "zero_one", "none"] = Field("zscore", description=(
        "Intensity scaling after the window: zscore (patch mean 0, SD 1; S1, S5), minus_one_one (window to "
        "[-1, 1]; S2), zero_one (window to [0, 1]; S3, S4) or none (HU kept)."))
    patch: PatchConfig = Field(default_factory=Stack25DPatch)
    workers: int = Field(2, ge=1, description="Worker processes over patients.")
    cache_dir: Path | None = Field(None, description="Patch cache; default <output>/cache/patches.")

    @field_validator("spacing")
    @classmethod
    def _spacing(cls, v):
        if v is not None and (len(v) != 3 or any(s <= 0 for s in v)):
            raise ValueError("spacing needs three positive numbers (x, y, z) in mm")
        return v
