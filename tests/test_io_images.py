"""Reading CT images: NIfTI orientation, real DICOM series (plain and JPEG 2000), series
selection, slice sorting, gaps, rescale, and the synthetic DICOM round trip."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import shared_path
from gastrorad.errors import InputError
from gastrorad.io import read_image, read_image_geometry, write_image
from gastrorad.io.geometry import Geometry, canonical_geometry, to_canonical


def test_nifti_ras_is_reoriented_to_lps():
    path = shared_path("ct", "totalsegmentator", "example_ct_sm.nii.gz")
    raw = sitk.ReadImage(str(path))
    assert raw.GetDirection()[0] == -1.0  # stored RAS-like
    img = read_image(path)
    assert np.allclose(img.GetDirection(), np.eye(3).ravel())
    # Same voxel, same physical point, whatever the orientation.
    p = raw.TransformIndexToPhysicalPoint((10, 20, 5))
    assert raw[10, 20, 5] == img[img.TransformPhysicalPointToIndex(p)]
    assert img.GetPixelID() == sitk.sitkFloat32


@pytest.mark.parametrize("flip", ["RAS", "LPI", "RPS", "LAS"])
def test_canonical_geometry_from_header_matches_reorientation(flip, tmp_path):
    img = sitk.GetImageFromArray(np.random.default_rng(0).normal(size=(6, 7, 8)).astype(np.float32))
    img.SetSpacing((0.7, 0.8, 2.5))
    img.SetOrigin((-10.0, 5.0, 30.0))
    stored = sitk.DICOMOrient(img, flip)
    geom = canonical_geometry(Geometry.of(stored))
    assert geom == Geometry.of(to_canonical(stored)) or np.allclose(
        np.concatenate([geom.spacing, geom.origin, geom.direction]),
        np.concatenate([Geometry.of(to_canonical(stored)).spacing, Geometry.of(to_canonical(stored)).origin,
                        Geometry.of(to_canonical(stored)).direction]))
    path = write_image(stored, tmp_path / "x.nrrd")
    assert read_image_geometry(path).size == Geometry.of(img).size
    assert np.array_equal(sitk.GetArrayFromImage(read_image(path)), sitk.GetArrayFromImage(img))


def test_real_dicom_series_plain_and_jpeg2000_are_identical():
    plain = read_image(shared_path("ct", "totalsegmentator", "example_ct_dicom"))
    j2k = read_image(shared_path("ct", "totalsegmentator", "example_ct_dicom_j2k"))
    assert plain.GetSize() == (512, 512, 20)
    # 3 mm slices reconstructed 2 mm apart: the spacing is the distance between positions.
    assert plain.GetSpacing() == pytest.approx((0.9765625, 0.9765625, 2.0))
    a, b = sitk.GetArrayFromImage(plain), sitk.GetArrayFromImage(j2k)
    assert np.array_equal(a, b)
    assert a.min() == -1024 and a.max() > 1000  # rescale applied: HU, not stored values


def test_real_dicom_matches_its_label_map_grid():
    img = read_image(shared_path("ct", "totalsegmentator", "example_ct_dicom"))
    seg = read_image(shared_path("ct", "totalsegmentator", "example_seg_dicom.nii.gz"))
    from gastrorad.io.geometry import geometry_mismatch
    assert geometry_mismatch(Geometry.of(img), Geometry.of(seg)) == []


def test_series_sorted_by_position_not_file_name():
    folder = shared_path("dicom", "dicomdirtests", "98892001", "CT5N")
    img = read_image(folder)
    assert img.GetSize() == (16, 16, 5)
    assert img.GetSpacing()[2] == pytest.approx(2.5)
    assert img.GetOrigin()[2] == pytest.approx(-1.2375)  # lowest slice first in LPS


def test_series_with_a_gap_is_refused():
    folder = shared_path("dicom", "dicomdirtests", "77654033", "CT2")
    with pytest.raises(InputError, match="inconsistent slice spacing"):
        read_image(folder)


def test_folder_with_several_series_needs_a_uid():
    folder = shared_path("dicom", "dicomdirtests")
    with pytest.raises(InputError) as exc:
        read_image(folder)
    msg = str(exc.value)
    assert "several series" in msg
    from gastrorad.io.dicom_series import scan_folder
    series = scan_folder(folder)
    assert len(series) == 2 and all(uid in msg for uid in series)
    good = next(u for u, s in series.items() if len(s.files) == 5)
    assert read_image(f"{folder}#{good}").GetSize() == (16, 16, 5)
    with pytest.raises(InputError, match="not found"):
        read_image(f"{folder}#1.2.3")


def test_single_dicom_file_and_missing_paths(tmp_path):
    img = read_image(shared_path("dicom", "CT_small.dcm"))
    assert img.GetSize() == (128, 128, 1)
    with pytest.raises(InputError, match="does not exist"):
        read_image(tmp_path / "nope.nii.gz")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match="not a readable NIfTI file"):
        read_image(bad)
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(InputError, match="unknown image format"):
        read_image(tmp_path / "x.png")


def test_synthetic_dicom_round_trip_equals_nifti(tmp_path):
    from gastrorad.synth import synthesize
    synthesize("s2", tmp_path, n=4, seed=5, dicom=True, workers=1)
    import pandas as pd
    m = pd.read_csv(tmp_path / "manifest.csv")
    row = m.iloc[0]
    dcm = read_image(tmp_path / row["image"])
    nii = read_image(tmp_path / "images" / f"{row['patient_id']}_venous.nii.gz")
    assert Geometry.of(dcm).size == Geometry.of(nii).size
    assert np.allclose(dcm.GetOrigin(), nii.GetOrigin(), atol=1e-3)
    assert np.allclose(dcm.GetSpacing(), nii.GetSpacing(), atol=1e-5)
    assert np.array_equal(sitk.GetArrayFromImage(dcm), sitk.GetArrayFromImage(nii))


def test_nii_gz_integrity_reads_the_trailer_and_counts_only_when_it_must(tmp_path, monkeypatch):
    """A complete .nii.gz is checked from its gzip trailer (no second decompression before ITK
    reads it); a cut one, or one whose trailer does not match the header, is counted in full."""
    import gzip

    from gastrorad.io import integrity
    img = sitk.GetImageFromArray(np.arange(40 * 50 * 60, dtype=np.int16).reshape(40, 50, 60))
    good = tmp_path / "ct.nii.gz"
    sitk.WriteImage(img, str(good), useCompression=True)
    counted = []
    real = integrity.gunzipped_size
    monkeypatch.setattr(integrity, "gunzipped_size", lambda p, start=0: counted.append(p) or real(p, start))
    integrity.check_image_file(good)
    assert counted == []
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated"):
        integrity.check_image_file(cut)
    assert counted == [cut]
    # two gzip members (legal, rare): the trailer holds the last member's size only, so it is counted
    two = tmp_path / "two.nii.gz"
    raw = gzip.decompress(good.read_bytes())
    two.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    integrity.check_image_file(two)
    assert counted[-1] == two
    assert np.array_equal(sitk.GetArrayFromImage(read_image(two)), sitk.GetArrayFromImage(read_image(good)))
