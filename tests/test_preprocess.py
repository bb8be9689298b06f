"""The preprocess stage: patches for a whole study, cache hits, invalidation, determinism,
per-instance errors that keep finished work, and real CT through the pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from conftest import shared_path, write_yaml
from gastrorad.config import load_study
from gastrorad.errors import InputError
from gastrorad.preprocess import preprocess_study
from gastrorad.preprocess.cache import load_patches


def test_study_patches_cache_and_invalidation(s1_copy):
    cfg = load_study(s1_copy / "study.yaml")
    first = preprocess_study(cfg, workers=2)
    assert first.problems == [] and first.computed == 8 and first.cached == 0
    arr, channels, meta = load_patches(first.index.path[0])
    assert arr.shape == (12, 224, 224) and channels[-1] == "mask"
    assert set(np.unique(arr[-1])) <= {0.0, 1.0} and arr[-1].sum() > 0
    assert abs(arr[:11].mean()) < 1e-4 and abs(arr[:11].std() - 1) < 1e-3  # z-score per patch
    assert (cfg.output_dir / "patches.csv").exists()

    again = preprocess_study(cfg, workers=2)
    assert again.computed == 0 and again.cached == 8  # a second run does no work
    assert again.index["path"].tolist() == first.index["path"].tolist()

    # One changed image recomputes that patient only; a changed parameter recomputes all.
    m = pd.read_csv(s1_copy / "manifest.csv")
    img = sitk.ReadImage(str(s1_copy / m.image[0]))
    sitk.WriteImage(img + 1, str(s1_copy / m.image[0]))
    assert preprocess_study(cfg, workers=1).computed == 1
    cfg2 = cfg.model_copy(deep=True)
    cfg2.preprocess.window.high = 400
    assert preprocess_study(cfg2, workers=1).computed == 8


def test_patches_are_deterministic_across_worker_counts(s1_study, tmp_path):
    cfg = load_study(s1_study / "study.yaml")
    a = preprocess_study(cfg.model_copy(update={"output": tmp_path / "a"}), workers=1)
    b = preprocess_study(cfg.model_copy(update={"output": tmp_path / "b"}), workers=2)
    for pa, pb in zip(a.index.path, b.index.path):
        assert np.array_equal(load_patches(pa)[0], load_patches(pb)[0])


def test_bad_instance_is_reported_and_others_are_kept(s1_copy):
    m = pd.read_csv(s1_copy / "manifest.csv", dtype=str, keep_default_na=False)
    m.loc[2, "mask"] = "masks/none.nii.gz"
    m.to_csv(s1_copy / "manifest.csv", index=False)
    cfg = load_study(s1_copy / "study.yaml")
    res = preprocess_study(cfg, workers=2)
    assert len(res.problems) == 1 and res.problems[0].row == 4 and "does not exist" in res.problems[0].reason
    assert res.computed == 7 and len(res.index) == 7


def test_table_errors_stop_before_any_work(s1_copy):
    c = pd.read_csv(s1_copy / "clinical.csv")
    c.loc[0, "label"] = 5
    c.to_csv(s1_copy / "clinical.csv", index=False)
    cfg = load_study(s1_copy / "study.yaml")
    with pytest.raises(InputError, match="non-binary"):
        preprocess_study(cfg)
    assert not cfg.cache_dir.exists()


@pytest.mark.parametrize("image,mask", [
    (("ct", "totalsegmentator", "example_ct_sm.nii.gz"), ("ct", "totalsegmentator", "example_ct_sm_stomach.nii.gz")),
    (("ct", "totalsegmentator", "example_ct_dicom_j2k"), ("ct", "totalsegmentator", "example_seg_dicom.nii.gz")),
])
def test_real_ct_through_the_pipeline(tmp_path, image, mask):
    img, msk = shared_path(*image), shared_path(*mask)
    sel = "#6" if "seg_dicom" in str(msk) else ""
    pd.DataFrame({"patient_id": ["R1"], "image": [str(img)], "mask": [str(msk) + sel]}).to_csv(tmp_path / "m.csv", index=False)
    pd.DataFrame({"patient_id": ["R1", "R2"], "center": ["A", "A"], "label": [0, 1]}).to_csv(tmp_path / "c.csv", index=False)
    study = write_yaml(tmp_path / "s.yaml", {
        "data": {"manifest": "m.csv", "clinical": "c.csv"}, "outcome": {"kind": "binary"},
        "cohorts": {"split": {"centers": ["A"], "ratio": {"training": 1}, "stratify": False}},
        "preprocess": {"patch": {"mode": "stack25d", "size": [64, 64], "context_slices": 2}}, "output": "run"})
    res = preprocess_study(load_study(study), workers=1, validate=False)
    assert res.problems == []
    arr, channels, meta = load_patches(res.index.path[0])
    assert arr.shape == (6, 64, 64)
    assert meta["side_mm"] > 50  # the stomach is several centimetres across
    assert arr[-1].mean() > 0.1  # the (irregular) stomach fills a good part of the square built around it
