"""Handcrafted IBSI radiomics of one ROI: first-order, shape and texture features.

This is the reference signature a deep signature must beat (SPEC section 6). Features are
computed by PyRadiomics (installed from PyPI as ``pyradiomics-bhklab``, the maintained
BSD-3 fork that builds on NumPy 2; the ``pyradiomics`` 3.1.0 sdist does not build). The
feature definitions follow the Image Biomarker Standardisation Initiative:

- first-order (intensity statistics, IBSI 3.3 and 3.4), shape (morphology, IBSI 3.1),
- GLCM (IBSI 3.6), GLRLM (3.7), GLSZM (3.8), GLDM (= NGLDM with coarseness 0, IBSI 3.11)
  and NGTDM (3.10).

The image processing order is IBSI's (IBSI reference manual, chapter 2): interpolation to
the study spacing (B-spline image, nearest-neighbour mask, grid aligned to the input
origin), intensity clipping to the study window, then discretisation with a fixed bin
width in HU (fixed bin size, IBSI 2.7.2, recommended for CT).

Two documented departures from IBSI, both PyRadiomics behaviour:

- bin edges are multiples of the bin width (``floor(x / w) - floor(min / w) + 1``) rather
  than offsets from the re-segmentation minimum; features that do not depend on absolute
  grey levels (contrast, entropy, uniformity, run/zone features) are unaffected, and the
  two agree whenever the window's lower bound is a multiple of the bin width;
- texture matrices are merged per direction and averaged over the 13 (3D) or 4 (2D)
  directions (IBSI "averaged" aggregation), and the GLCM is symmetric.

References
----------
Zwanenburg A, Vallieres M, et al. The Image Biomarker Standardization Initiative:
standardized quantitative radiomics for high-throughput image-based phenotyping.
Radiology 2020;295:328-338. Reference manual: arXiv:1612.07003.

van Griethuysen JJM, et al. Computational radiomics system to decode the radiographic
phenotype. Cancer Res 2017;77:e104-e107 (PyRadiomics).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata

import numpy as np
import SimpleITK as sitk

from gastrorad.errors import InputError, Problem
from gastrorad.io.geometry import Geometry, geometry_mismatch

#: Feature classes extracted by default, in PyRadiomics' names.
DEFAULT_CLASSES: tuple[str, ...] = ("firstorder", "shape", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
_INTERPOLATORS = {"bspline": "sitkBSpline", "linear": "sitkLinear", "nearest": "sitkNearestNeighbor"}
_DISTRIBUTIONS = ("pyradiomics-bhklab", "pyradiomics")


def library_version() -> str:
    """``name version`` of the installed PyRadiomics distribution (part of every cache key)."""
    for dist in _DISTRIBUTIONS:
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    raise ImportError("handcrafted radiomics needs PyRadiomics: pip install 'pyradiomics-bhklab>=3.1.4'")


@dataclass(frozen=True)
class HandcraftedSettings:
    """Every setting that changes a handcrafted feature value.

    Attributes
    ----------
    spacing
        Target voxel spacing (x, y, z) in mm, or ``None`` for the native grid. A direction
        in which the ROI spans a single slice is not resampled (PyRadiomics' rule), so a
        one-slice ROI keeps its slice.
    bin_width
        Fixed bin size in HU (IBSI 2.7.2).
    window
        ``(low, high)`` HU: intensities are clipped to it after interpolation, as the deep
        model's patches are; ``None`` keeps the raw HU.
    classes
        Feature classes (PyRadiomics names). ``"shape"`` means 2D shape when ``force2d``.
    force2d
        Single-slice ROIs (S1, S5): shape is 2D (``shape2D``) and texture matrices are
        computed in-plane, per slice. ``None``: decided by the ROI (:meth:`resolved`): 2D
        when it lies on one axial slice, 3D when it spans several.
    interpolation
        Image interpolator for resampling: ``"bspline"`` (default, as PyRadiomics and S5),
        ``"linear"`` or ``"nearest"``; the mask always uses nearest neighbour.
    voxel_array_shift
        Added to intensities before the first-order energy features (IBSI: 0; PyRadiomics
        suggests 1000 for CT so that negative HU do not cancel).
    distances
        Neighbour distances for texture matrices (IBSI default: 1, Chebyshev).
    """

    spacing: tuple[float, float, float] | None = (1.0, 1.0, 1.0)
    bin_width: float = 25.0
    window: tuple[float, float] | None = None
    classes: tuple[str, ...] = DEFAULT_CLASSES
    force2d: bool | None = False
    interpolation: str = "bspline"
    voxel_array_shift: float = 0.0
    distances: tuple[int, ...] = field(default=(1,))

    def __post_init__(self) -> None:
        if self.spacing is not None:
            spacing = tuple(float(s) for s in self.spacing)
            if len(spacing) != 3 or any(s <= 0 for s in spacing):
                raise ValueError(f"spacing needs three positive numbers (x, y, z) in mm, got {self.spacing}")
            object.__setattr__(self, "spacing", spacing)
        if not self.bin_width > 0:
            raise ValueError(f"bin_width must be positive, got {self.bin_width}")
        if self.window is not None:
            low, high = (float(v) for v in self.window)
            if not low < high:
                raise ValueError(f"window needs low < high, got {self.window}")
            object.__setattr__(self, "window", (low, high))
        known = set(DEFAULT_CLASSES) | {"shape2D"}
        unknown = [c for c in self.classes if c not in known]
        if unknown:
            raise ValueError(f"unknown feature classes {unknown}; use some of {sorted(known)}")
        object.__setattr__(self, "classes", tuple(self.classes))
        if self.interpolation not in _INTERPOLATORS:
            raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATORS)}, got {self.interpolation!r}")
        object.__setattr__(self, "distances", tuple(int(d) for d in self.distances))

    def to_dict(self) -> dict:
        """Plain JSON-able dict (the settings part of a cache key)."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def resolved(self, n_slices: int) -> HandcraftedSettings:
        """These settings for an ROI on ``n_slices`` axial slices: ``force2d=None`` becomes
        2D for a single-slice ROI and 3D otherwise; an explicit choice is kept."""
        if self.force2d is not None:
            return self
        return replace(self, force2d=int(n_slices) == 1)

    def pyradiomics_settings(self) -> dict:
        """The PyRadiomics extractor settings these settings amount to.

        Resampling and clipping are done before the extractor runs (so that clipping
        follows interpolation); the keys ``resampledPixelSpacing`` and ``interpolator``
        state what was applied, as PyRadiomics would report it.
        """
        self._require_resolved()
        return {
            "binWidth": self.bin_width,
            "resampledPixelSpacing": list(self.spacing) if self.spacing is not None else None,
            "interpolator": _INTERPOLATORS[self.interpolation] if self.spacing is not None else None,
            "padDistance": 5,
            "force2D": self.force2d,
            "force2Ddimension": 0,
            "distances": list(self.distances),
            "voxelArrayShift": self.voxel_array_shift,
            "normalize": False,
            "removeOutliers": None,
            "resegmentRange": None,
            "label": 1,
            "gldm_a": 0,
            "weightingNorm": None,
            "minimumROIDimensions": 1,
            "minimumROISize": None,
            "preCrop": False,
        }

    def enabled_classes(self) -> list[str]:
        """Feature classes handed to PyRadiomics (``shape`` becomes ``shape2D`` in 2D)."""
        self._require_resolved()
        out = []
        for c in self.classes:
            c = "shape2D" if (c == "shape" and self.force2d) else c
            if c not in out:
                out.append(c)
        return out

    def _require_resolved(self) -> None:
        if self.force2d is None:
            raise ValueError("force2d=None is decided per ROI: call settings.resolved(n_slices) first")


def extract_handcrafted(
    image: sitk.Image,
    mask: sitk.Image,
    *,
    spacing: tuple[float, float, float] | None = (1.0, 1.0, 1.0),
    bin_width: float = 25.0,
    window: tuple[float, float] | None = None,
    classes: tuple[str, ...] = DEFAULT_CLASSES,
    force2d: bool | None = False,
    interpolation: str = "bspline",
    voxel_array_shift: float = 0.0,
    settings: HandcraftedSettings | None = None,
    source: str | None = None,
) -> dict[str, float]:
    """IBSI first-order, shape and texture features of one ROI.

    Parameters
    ----------
    image
        CT volume in HU (any pixel type; gastrorad's readers give float32 LPS).
    mask
        ROI on the image's grid; any non-zero voxel is in the ROI.
    spacing, bin_width, window, classes, force2d, interpolation, voxel_array_shift
        See :class:`HandcraftedSettings`; ignored when ``settings`` is given.
    settings
        All settings at once (what the study-level extraction passes).
    source
        Name of the mask (file path) used in error messages.

    Returns
    -------
    dict
        Feature name -> value, named as PyRadiomics does (``original_<class>_<Feature>``,
        e.g. ``original_glcm_Contrast``), in a fixed order. Deterministic.

    Raises
    ------
    InputError
        Empty mask, mask off the image's grid, a ROI too small for a feature class, or
        2D shape (``force2d``) of an ROI on several slices; the message names ``source``.

    Notes
    -----
    Processing order (IBSI reference manual, figure 2.1): interpolation of image and mask
    to ``spacing`` (PyRadiomics ``resampleImage``: only the ROI's bounding box plus 5
    voxels is resampled, so the cost does not grow with the field of view), clipping to
    ``window``, discretisation with fixed bin width, feature computation.
    """
    from radiomics import featureextractor, imageoperations

    if settings is None:
        settings = HandcraftedSettings(spacing=spacing, bin_width=bin_width, window=window, classes=classes,
                                       force2d=force2d, interpolation=interpolation,
                                       voxel_array_shift=voxel_array_shift)
    where = source or "<mask>"
    if image.GetDimension() != 3 or mask.GetDimension() != 3:
        raise InputError(Problem(where, "handcrafted features need a 3D image and mask"))
    reasons = geometry_mismatch(Geometry.of(image), Geometry.of(mask))
    if reasons:
        raise InputError(Problem(where, "mask does not lie on the image's grid: " + "; ".join(reasons)))
    roi = sitk.GetArrayViewFromImage(mask) != 0
    if not roi.any():
        raise InputError(Problem(where, "mask is empty (no ROI voxel)"))
    n_slices = roi_slice_count(mask)
    settings = settings.resolved(n_slices)
    if "shape2D" in settings.enabled_classes() and n_slices > 1:
        raise InputError(Problem(where, f"2D shape needs an ROI on one axial slice; this one spans {n_slices} slices "
                                        "(for 3D features set radiomics.force2d: false in the study file or leave it unset to "
                                        "decide by the ROIs, or drop 'shape' from the classes)"))

    label = sitk.Cast(mask != 0, sitk.sitkUInt8)
    label.CopyInformation(mask)
    pyr = settings.pyradiomics_settings()
    try:
        if settings.spacing is not None:
            interpolator = getattr(sitk, pyr["interpolator"])
            near = _crop_around_roi(image, roi, settings.spacing, pyr["padDistance"])
            image, label = imageoperations.resampleImage(near, label, **{**pyr, "interpolator": interpolator})
        if settings.window is not None:
            image = sitk.Clamp(sitk.Cast(image, sitk.sitkFloat64), sitk.sitkFloat64, *settings.window)
        extractor = featureextractor.RadiomicsFeatureExtractor(
            **{**pyr, "resampledPixelSpacing": None, "additionalInfo": False})
        extractor.disableAllFeatures()
        for name in settings.enabled_classes():
            extractor.enableFeatureClassByName(name)
        with _quiet_radiomics():
            raw = extractor.execute(image, label, label=1)
    except (ValueError, AssertionError) as exc:
        raise InputError(Problem(where, f"cannot compute handcrafted features: {exc}")) from exc
    out = {}
    for key, value in raw.items():
        if key.startswith("diagnostics_"):
            continue
        out[key] = float(np.asarray(value).item())
    bad = [k for k, v in out.items() if not math.isfinite(v)]
    if len(bad) == len(out):
        raise InputError(Problem(where, "no finite handcrafted feature (ROI too small?)"))
    return out


def roi_slice_count(mask: sitk.Image) -> int:
    """How many axial slices (the image's third axis) hold at least one ROI voxel."""
    roi = sitk.GetArrayViewFromImage(mask) != 0
    return int(np.count_nonzero(roi.any(axis=(1, 2))))


#: Input voxels kept around the resampling region. The cubic B-spline prefilter is global
#: but its influence decays as 0.268^d with the distance d (voxels) from the crop border,
#: so 24 voxels change interpolated values by < 1e-13 relative, while the prefilter no
#: longer runs over the whole field of view (3x faster per patient on S1-sized CTs).
_BSPLINE_MARGIN = 24


def _crop_around_roi(image: sitk.Image, roi: np.ndarray, spacing, pad_distance: int) -> sitk.Image:
    """The part of ``image`` that resampling the ROI's bounding box (plus PyRadiomics'
    ``padDistance`` output voxels) can read, with a margin for the B-spline prefilter.

    PyRadiomics computes the output grid from the (uncropped) mask, so the grid, and
    hence every sampled position, is the same as without this crop.
    """
    nz = np.nonzero(roi.any(axis=(1, 2)))[0], np.nonzero(roi.any(axis=(0, 2)))[0], np.nonzero(roi.any(axis=(0, 1)))[0]
    lo_zyx = np.array([a[0] for a in nz])
    hi_zyx = np.array([a[-1] for a in nz])
    lo, hi = lo_zyx[::-1], hi_zyx[::-1]  # x, y, z
    ratio = np.asarray(spacing, dtype=float) / np.asarray(image.GetSpacing(), dtype=float)
    margin = np.ceil((pad_distance + 1) * ratio).astype(int) + _BSPLINE_MARGIN
    size = np.asarray(image.GetSize())
    start = np.maximum(lo - margin, 0)
    stop = np.minimum(hi + margin + 1, size)
    return sitk.RegionOfInterest(image, [int(v) for v in stop - start], [int(v) for v in start])


class _quiet_radiomics:
    """Silence PyRadiomics' per-call INFO/WARNING chatter (GLCM symmetry notes, etc.)."""

    def __enter__(self):
        self._logger = logging.getLogger("radiomics")
        self._level = self._logger.level
        self._logger.setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc):
        self._logger.setLevel(self._level)
        return False
