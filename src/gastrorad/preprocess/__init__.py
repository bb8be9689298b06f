"""From CT + ROI to fixed-size patches: ROI-first resampling, HU windows, normalisation,
the patch modes (``patches/``), the per-patient cache and the parallel study pipeline."""

from gastrorad.preprocess.intensity import apply_window, normalise
from gastrorad.preprocess.patches import PATCH_MODES, PatchSet, get_patch_mode
from gastrorad.preprocess.pipeline import cut_patches, preprocess_study
from gastrorad.preprocess.roi import RoiInfo, roi_from_bbox, roi_from_mask

__all__ = ["PATCH_MODES", "PatchSet", "RoiInfo", "apply_window", "cut_patches", "get_patch_mode", "normalise",
           "preprocess_study", "roi_from_bbox", "roi_from_mask"]
