"""Masks: label images on the image grid, DICOM SEG and RTSTRUCT (rasterised), errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from conftest import phantom, shared_path
from gastrorad.errors import InputError
from gastrorad.io import read_image, read_mask, write_image


def test_label_selector_on_real_ct():
    img = read_image(shared_path("ct", "totalsegmentator", "example_ct_dicom"))
    stomach = read_mask(str(shared_path("ct", "totalsegmentator", "example_seg_dicom.nii.gz")) + "#6", img)
    assert int(sitk.GetArrayFromImage(stomach).sum()) == 74102  # as the data README states
    anything = read_mask(shared_path("ct", "totalsegmentator", "example_seg_dicom.nii.gz"), img)
    assert sitk.GetArrayFromImage(anything).sum() > 74102


def test_mask_off_the_grid_and_empty_mask_are_refused(tmp_path):
    img = phantom()
    shifted = phantom(origin=(0.0, 0.0, 1.5), value=1)
    write_image(shifted, tmp_path / "m.nii.gz")
    with pytest.raises(InputError, match="origin"):
        read_mask(tmp_path / "m.nii.gz", img)
    coarse = phantom(spacing=(1.0, 1.0, 4.0), value=1)
    write_image(coarse, tmp_path / "c.nii.gz")
    with pytest.raises(InputError, match="spacing"):
        read_mask(tmp_path / "c.nii.gz", img)
    write_image(phantom(value=0), tmp_path / "e.nii.gz")
    with pytest.raises(InputError, match="empty"):
        read_mask(tmp_path / "e.nii.gz", img)


def test_any_non_zero_label_is_the_roi_negative_ones_too(tmp_path):
    """Issue 12, item 9: ROI voxels labelled -1 were reported as an empty mask."""
    img = phantom()
    arr = np.zeros((30, 36, 40), np.int16)
    arr[10:14, 8:12, 5:9] = -1
    lab = sitk.GetImageFromArray(arr)
    lab.CopyInformation(img)
    write_image(lab, tmp_path / "neg.nii.gz")
    m = sitk.GetArrayFromImage(read_mask(tmp_path / "neg.nii.gz", img))
    assert m.sum() == 4 * 4 * 4 and m[10:14, 8:12, 5:9].all()


def test_seg_and_rtstruct_equal_the_label_mask(tmp_path):
    from gastrorad.synth import synthesize
    synthesize("s5", tmp_path, n=4, seed=2, dicom=True, workers=1)
    m = pd.read_csv(tmp_path / "manifest.csv")
    row = m.iloc[0]
    img = read_image(tmp_path / row["image"])
    stem = row["image"].split("/")[-1]
    label = sitk.GetArrayFromImage(read_mask(tmp_path / "masks" / f"{stem}_primary.nii.gz", img))
    seg = sitk.GetArrayFromImage(read_mask(tmp_path / row["mask"], img))
    rt = sitk.GetArrayFromImage(read_mask(tmp_path / "dicom" / f"{stem}_rtstruct.dcm", img))
    assert label.sum() > 20
    assert np.array_equal(seg, label)
    assert np.array_equal(rt, label)
    named = sitk.GetArrayFromImage(read_mask(str(tmp_path / "dicom" / f"{stem}_rtstruct.dcm") + "#GTV", img))
    assert np.array_equal(named, label)
    with pytest.raises(InputError, match="structure 'Liver' not found"):
        read_mask(str(tmp_path / "dicom" / f"{stem}_rtstruct.dcm") + "#Liver", img)
    with pytest.raises(InputError, match="segment 'spleen' not found"):
        read_mask(str(tmp_path / row["mask"]) + "#spleen", img)
