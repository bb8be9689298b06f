"""Handcrafted radiomics: parity with PyRadiomics' published baseline, a planted signal,
the per-instance cache and input errors.

Reference values: ``tests/fixtures/radiomics/baseline_<class>.csv`` are PyRadiomics'
published baseline for its test case ``breast1`` (see the README there for the source
commit and how to regenerate them).
"""

from __future__ import annotations

import ast
import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter
from scipy.stats import spearmanr

pytest.importorskip("radiomics")

from gastrorad.errors import InputError  # noqa: E402
from gastrorad.io.images import read_image  # noqa: E402
from gastrorad.io.masks import read_mask  # noqa: E402
from gastrorad.radiomics import HandcraftedSettings, extract_feature_table, extract_handcrafted  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "radiomics"
CLASSES = ("firstorder", "shape", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
TEXTURE = ("glcm", "glrlm", "glszm", "gldm", "ngtdm")

# PyRadiomics' defaults for settings a baseline column may leave out, and the settings
# that change feature values (the others only toggle checks or diagnostics).
PYRADIOMICS_DEFAULTS = {"binWidth": 25, "resampledPixelSpacing": None, "interpolator": "sitkBSpline",
                        "padDistance": 5, "force2D": False, "force2Ddimension": 0, "distances": [1],
                        "voxelArrayShift": 0, "normalize": False, "removeOutliers": None, "resegmentRange": None,
                        "label": 1, "gldm_a": 0, "weightingNorm": None}

# gastrorad settings that reproduce each baseline configuration.
CONFIGURATIONS = {
    "breast1": HandcraftedSettings(spacing=None, bin_width=25, voxel_array_shift=2000),
    "breast1_resampling": HandcraftedSettings(spacing=(2, 2, 2), bin_width=25, interpolation="bspline"),
    "breast1_2d": HandcraftedSettings(spacing=None, bin_width=25, force2d=True, classes=TEXTURE),
}


def _baseline(column: str) -> dict[str, tuple[dict, dict[str, float]]]:
    """Feature class -> (settings, {feature: published value}) for one baseline column."""
    out = {}
    for cls in CLASSES:
        with open(FIXTURES / f"baseline_{cls}.csv", newline="") as fh:
            rows = list(csv.reader(fh))
        header = rows[0]
        if column not in header:
            continue
        j = header.index(column)
        cells = {r[0]: r[j] for r in rows[1:]}
        settings = ast.literal_eval(cells["diagnostics_Configuration_Settings"])
        values = {k: float(v) for k, v in cells.items() if not k.startswith("diagnostics_")}
        out[cls] = (settings, values)
    return out


def _value_settings(settings: dict) -> dict:
    merged = {k: settings.get(k, default) for k, default in PYRADIOMICS_DEFAULTS.items()}
    if merged["resampledPixelSpacing"] is None:
        merged["interpolator"] = None  # only used when resampling
    return merged


@pytest.mark.parametrize("column", sorted(CONFIGURATIONS))
def test_parity_with_pyradiomics_published_baseline(column):
    settings = CONFIGURATIONS[column]
    baseline = _baseline(column)
    assert set(baseline) >= set(settings.classes)
    for cls, (published_settings, _) in baseline.items():
        assert _value_settings(settings.pyradiomics_settings()) == _value_settings(published_settings), cls
    if settings.spacing is None:
        # gastrorad's readers: canonical LPS float32; exact for an int16 image on its own grid.
        image = read_image(FIXTURES / "breast1_image.nrrd")
        mask = read_mask(FIXTURES / "breast1_label.nrrd", image)
    else:
        # The published resampled values come from B-spline interpolation of the int16
        # image as stored (interpolated values truncated to int16); gastrorad's float32
        # reader interpolates without truncation (first-order skewness then differs by ~2 %).
        image = sitk.ReadImage(str(FIXTURES / "breast1_image.nrrd"))
        mask = sitk.ReadImage(str(FIXTURES / "breast1_label.nrrd"))
    features = extract_handcrafted(image, mask, settings=settings)
    expected = {k: v for cls in settings.classes for k, v in baseline[cls][1].items()}
    assert set(features) == set(expected)
    got = np.array([features[k] for k in sorted(expected)])
    want = np.array([expected[k] for k in sorted(expected)])
    # Published values carry 12 significant digits; PyRadiomics' own tests accept 3 %.
    bad = [(k, features[k], expected[k]) for k in sorted(expected)
           if not np.isclose(features[k], expected[k], rtol=1e-9, atol=1e-12)]
    assert not bad, bad
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def _blob(rng: np.random.Generator, sd: float) -> tuple[sitk.Image, sitk.Image]:
    """A 24^3 mm cube with a 9 mm-radius ball ROI whose texture has standard deviation ``sd`` HU."""
    n = 24
    noise = gaussian_filter(rng.standard_normal((n, n, n)), 1.0)
    arr = (40.0 + sd * noise / noise.std()).astype(np.float32)
    zz, yy, xx = np.mgrid[:n, :n, :n] - (n - 1) / 2
    roi = (zz**2 + yy**2 + xx**2 <= 81).astype(np.uint8)
    image, mask = sitk.GetImageFromArray(arr), sitk.GetImageFromArray(roi)
    return image, mask


def test_planted_texture_heterogeneity_is_ranked():
    rng = np.random.default_rng(7)
    sds = rng.permutation(np.linspace(10, 200, 20))
    settings = HandcraftedSettings(spacing=None, bin_width=25, classes=("firstorder", "glcm", "glszm"))
    rows = [extract_handcrafted(*_blob(rng, sd), settings=settings) for sd in sds]
    table = pd.DataFrame(rows)
    for name in ("original_firstorder_Entropy", "original_firstorder_Variance", "original_glcm_Contrast",
                 "original_glcm_JointEntropy"):
        rho = spearmanr(sds, table[name]).statistic
        assert rho > 0.9, (name, rho)
    assert spearmanr(sds, table["original_firstorder_Uniformity"]).statistic < -0.9
    # Deterministic: the same input gives the same numbers.
    again = extract_handcrafted(*_blob(np.random.default_rng(1), 50.0), settings=settings)
    assert again == extract_handcrafted(*_blob(np.random.default_rng(1), 50.0), settings=settings)


def _write_study(folder: Path, n: int = 3) -> Path:
    """``n`` patients with a NIfTI CT and mask each, and a manifest CSV."""
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        image, mask = _blob(rng, 30.0 + 40 * i)
        image.SetSpacing((0.8, 0.8, 2.0))
        mask.CopyInformation(image)
        sitk.WriteImage(image, str(folder / "images" / f"P{i}.nii.gz"))
        sitk.WriteImage(mask, str(folder / "images" / f"P{i}_mask.nii.gz"))
        rows.append({"patient_id": f"P{i}", "image": f"images/P{i}.nii.gz", "mask": f"images/P{i}_mask.nii.gz",
                     "phase": "venous"})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


def test_study_table_is_cached_and_parallel_runs_agree(tmp_path):
    manifest = _write_study(tmp_path / "study")
    cache = tmp_path / "cache"
    settings = HandcraftedSettings(window=(-350, 450), classes=("firstorder", "shape", "glcm"))
    seen = []
    first = extract_feature_table(manifest, settings=settings, cache_dir=cache, progress=lambda d, t: seen.append((d, t)))
    assert (first.computed, first.cached, first.problems) == (3, 0, [])
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert list(first.table["patient_id"]) == ["P0", "P1", "P2"]
    assert "original_glcm_Contrast" in first.table.columns
    files = sorted(cache.rglob("*.json"))
    assert len(files) == 3 and not list(cache.rglob(".*"))  # no temporary files left behind
    assert json.loads(files[0].read_text())["meta"]["library"].startswith("pyradiomics")

    second = extract_feature_table(manifest, settings=settings, cache_dir=cache, workers=2)
    assert (second.computed, second.cached) == (0, 3)
    pd.testing.assert_frame_equal(first.table, second.table)

    # A changed setting misses the cache; parallel workers give the same numbers as one process.
    other = HandcraftedSettings(window=(-350, 450), bin_width=10, classes=("firstorder", "shape", "glcm"))
    parallel = extract_feature_table(manifest, settings=other, cache_dir=cache, workers=2)
    serial = extract_feature_table(manifest, settings=other, cache_dir=None)
    assert parallel.computed == 3 and serial.computed == 3
    pd.testing.assert_frame_equal(parallel.table, serial.table)
    assert not np.allclose(parallel.table["original_glcm_Contrast"], first.table["original_glcm_Contrast"])


def test_window_clips_after_resampling():
    image, mask = _blob(np.random.default_rng(3), 300.0)
    clipped = sitk.Clamp(image, sitk.sitkFloat32, -100.0, 150.0)
    a = extract_handcrafted(image, mask, spacing=None, window=(-100, 150), classes=("firstorder",))
    b = extract_handcrafted(clipped, mask, spacing=None, classes=("firstorder",))
    assert a["original_firstorder_Minimum"] == -100.0 and a["original_firstorder_Maximum"] == 150.0
    assert a == pytest.approx(b, rel=1e-12)


def test_empty_mask_error_names_the_file(tmp_path):
    image, mask = _blob(np.random.default_rng(0), 20.0)
    empty = sitk.Image(mask.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(mask)
    with pytest.raises(InputError, match=r"masks/P7\.nii\.gz.*empty"):
        extract_handcrafted(image, empty, source="masks/P7.nii.gz")

    manifest = _write_study(tmp_path / "study", n=2)
    bad = tmp_path / "study" / "images" / "P1_mask.nii.gz"
    zeros = sitk.ReadImage(str(bad)) * 0
    sitk.WriteImage(zeros, str(bad))
    result = extract_feature_table(manifest, settings=HandcraftedSettings(classes=("firstorder",)))
    assert list(result.table["patient_id"]) == ["P0"]
    (problem,) = result.problems
    assert str(bad) in str(problem) and "empty" in problem.reason and problem.row == 3
    with pytest.raises(InputError, match="P1_mask.nii.gz"):
        result.raise_if_errors()


def test_2d_shape_needs_a_single_slice_roi():
    image, mask = _blob(np.random.default_rng(0), 20.0)
    with pytest.raises(InputError, match="one axial slice") as e:
        extract_handcrafted(image, mask, force2d=True, source="m.nii.gz")
    assert "radiomics.force2d: false" in str(e.value)  # the study-file key that gives 3D features
    arr = sitk.GetArrayFromImage(mask)
    arr[np.arange(arr.shape[0]) != 12] = 0
    one = sitk.GetImageFromArray(arr)
    one.CopyInformation(mask)
    feats = extract_handcrafted(image, one, force2d=True)
    assert "original_shape2D_PixelSurface" in feats and not any(k.startswith("original_shape_") for k in feats)
    assert feats["original_shape2D_PixelSurface"] == pytest.approx(float(arr[12].sum()))


def _flatten_mask(path: Path, keep: int = 12) -> None:
    """Keep only axial slice ``keep`` of the mask file at ``path`` (a single-slice ROI)."""
    m = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(m)
    arr[np.arange(arr.shape[0]) != keep] = 0
    flat = sitk.GetImageFromArray(arr)
    flat.CopyInformation(m)
    sitk.WriteImage(flat, str(path))


def test_unset_force2d_is_decided_by_the_rois(tmp_path):
    """``force2d=None`` (the study default): 2D when every ROI lies on one slice, 3D when they span
    several; a study with both gets 3D for all, the one-slice ROIs' values as an explicit 3D run gives."""
    auto = HandcraftedSettings(window=(-350, 450), classes=("firstorder", "shape", "glcm"), force2d=None)
    assert auto.resolved(1).force2d is True and auto.resolved(4).force2d is False
    assert HandcraftedSettings(force2d=False).resolved(1).force2d is False  # an explicit choice is kept
    with pytest.raises(ValueError, match="resolved"):
        auto.enabled_classes()

    volume = extract_feature_table(_write_study(tmp_path / "volume"), settings=auto)
    assert volume.force2d is False and not volume.notes
    assert "original_shape_VoxelVolume" in volume.table.columns and "3D" in volume.summary()
    explicit = extract_feature_table(tmp_path / "volume" / "manifest.csv", settings=replace(auto, force2d=False))
    pd.testing.assert_frame_equal(volume.table, explicit.table)

    manifest = _write_study(tmp_path / "flat")
    for i in range(3):
        _flatten_mask(tmp_path / "flat" / "images" / f"P{i}_mask.nii.gz")
    flat = extract_feature_table(manifest, settings=auto, cache_dir=tmp_path / "cache")
    assert flat.force2d is True and "original_shape2D_PixelSurface" in flat.table.columns
    assert not any(c.startswith("original_shape_") for c in flat.table.columns)
    again = extract_feature_table(manifest, settings=auto, cache_dir=tmp_path / "cache")
    assert (again.cached, again.force2d) == (3, True)  # the choice is read back from the cache too

    manifest = _write_study(tmp_path / "mixed")
    _flatten_mask(tmp_path / "mixed" / "images" / "P1_mask.nii.gz")
    mixed = extract_feature_table(manifest, settings=auto)
    assert mixed.force2d is False and mixed.problems == []
    assert "1 of 3 ROIs lie on one axial slice" in mixed.notes[0]
    assert list(mixed.table.patient_id) == ["P0", "P1", "P2"]
    assert not mixed.table.isna().any().any() and "original_shape_VoxelVolume" in mixed.table.columns
    in3d = extract_feature_table(manifest, settings=replace(auto, force2d=False))
    pd.testing.assert_frame_equal(mixed.table, in3d.table)


def test_resampling_matches_pyradiomics_own_pipeline():
    """gastrorad resamples a crop around the ROI; the values equal PyRadiomics' extractor
    resampling the whole volume (same grid, B-spline prefilter margin)."""
    from radiomics import featureextractor

    rng = np.random.default_rng(5)
    arr = (gaussian_filter(rng.standard_normal((30, 96, 96)), 1.5) * 400).astype(np.float32)
    roi = np.zeros(arr.shape, np.uint8)
    roi[12:17, 40:58, 35:60] = 1
    image, mask = sitk.GetImageFromArray(arr), sitk.GetImageFromArray(roi)
    for im in (image, mask):
        im.SetSpacing((0.7, 0.7, 2.5))
        im.SetOrigin((-30.0, 12.0, 4.0))
    ours = extract_handcrafted(image, mask, spacing=(1, 1, 1), bin_width=25)
    extractor = featureextractor.RadiomicsFeatureExtractor(resampledPixelSpacing=[1, 1, 1], interpolator="sitkBSpline",
                                                            binWidth=25, additionalInfo=False)
    theirs = {k: float(v) for k, v in extractor.execute(image, mask).items()}
    assert set(ours) == set(theirs)
    for k in ours:
        assert ours[k] == pytest.approx(theirs[k], rel=1e-9, abs=1e-12), k
