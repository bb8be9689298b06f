"""Synthetic cohorts: determinism, centre effects, HU realism, the planted signal in the
image, and an oracle that beats the clinical-only model."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy.stats import mannwhitneyu, spearmanr

from gastrorad.io import read_image, read_mask
from gastrorad.synth import synthesize
from gastrorad.synth.cohort import synthesize_tables
from gastrorad.synth.outcomes import draw_patients


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "synth.json":
            h.update(p.name.encode())
            h.update(sitk.GetArrayFromImage(sitk.ReadImage(str(p))).tobytes() if p.suffix == ".gz" else p.read_bytes())
    return h.hexdigest()


def _auc(score, y):
    y = np.asarray(y).astype(bool)
    return mannwhitneyu(score[y], score[~y]).statistic / (y.sum() * (~y).sum())


def test_deterministic_for_a_seed_whatever_the_workers(tmp_path):
    a = synthesize("s1", tmp_path / "a", n=4, seed=11, workers=1)
    b = synthesize("s1", tmp_path / "b", n=4, seed=11, workers=2)
    c = synthesize("s1", tmp_path / "c", n=4, seed=12, workers=1)
    assert _digest(a.folder) == _digest(b.folder)
    assert _digest(a.folder) != _digest(c.folder)


def _same_tables(folder, kind, n, seed):
    """synthesize_tables gives the clinical and truth tables synthesize wrote, without an image."""
    clinical, truth = synthesize_tables(kind, n=n, seed=seed)
    written = pd.read_csv(folder / "clinical.csv", dtype={"patient_id": str})
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(clinical.to_csv(index=False)),
                                              dtype={"patient_id": str}), written)
    truth_written = pd.read_csv(folder / "truth.csv", dtype={"patient_id": str}).drop(columns="tumour_voxels")
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(truth.to_csv(index=False)),
                                              dtype={"patient_id": str}), truth_written)


def test_tables_without_images_are_the_written_ones(tmp_path):
    synthesize("s2", tmp_path, n=4, seed=11, workers=1)
    _same_tables(tmp_path, "s2", 4, 11)
    other, _ = synthesize_tables("s2", n=4, seed=12)
    assert not other.equals(synthesize_tables("s2", n=4, seed=11)[0])
    with pytest.raises(ValueError, match="RECIST"):
        synthesize_tables("s3", n=4, seed=1)


def test_s1_study_contents_and_centre_effects(s1_study):
    m = pd.read_csv(s1_study / "manifest.csv")
    c = pd.read_csv(s1_study / "clinical.csv")
    t = pd.read_csv(s1_study / "truth.csv")
    assert len(c) == len(t) == 8 and set(c.center) == {"A", "B", "C"}
    assert set(c.label) <= {0, 1}
    spacings = {c.set_index("patient_id").center[r.patient_id]: read_image(s1_study / r.image).GetSpacing()
                for r in m.itertuples()}
    assert len({s for s in spacings.values()}) == 3  # each centre its own voxel size
    raw = sitk.ReadImage(str(s1_study / m.image[c.center.eq("C").idxmax()]))
    assert raw.GetDirection()[0] == -1  # centre C is stored RAS, like many NIfTI exports


def test_hu_realism_and_s1_roi_on_one_slice(s1_study):
    m = pd.read_csv(s1_study / "manifest.csv")
    img = read_image(s1_study / m.image[0])
    arr = sitk.GetArrayFromImage(img)
    mask = sitk.GetArrayFromImage(read_mask(s1_study / m["mask"][0], img)).astype(bool)
    assert np.count_nonzero(mask.any(axis=(1, 2))) == 1  # S1: ROI drawn on the largest slice only
    assert np.median(arr[:, :10, :10]) < -900  # air around the patient
    tumour = np.median(arr[mask])
    assert 40 < tumour < 160  # enhancing soft tissue
    hist = np.histogram(arr, bins=[-1100, -800, -300, -30, 300, 4000])[0] / arr.size
    assert hist[2] > 0.03 and hist[3] > 0.15  # fat and soft tissue both present


def test_whole_tumour_roi_gives_the_same_patients(tmp_path):
    import json

    import yaml
    paper = synthesize("s1", tmp_path / "paper", n=4, seed=3)
    whole = synthesize("s1", tmp_path / "whole", n=4, seed=3, roi="volume")
    mp, mw = (pd.read_csv(f / "manifest.csv") for f in (paper.folder, whole.folder))
    for a, b in zip(mp.itertuples(), mw.itertuples()):
        img = read_image(paper.folder / a.image)
        assert np.array_equal(sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(read_image(whole.folder / b.image)))
        one = sitk.GetArrayFromImage(read_mask(paper.folder / a.mask, img)).astype(bool)
        vol = sitk.GetArrayFromImage(read_mask(whole.folder / b.mask, img)).astype(bool)
        assert np.count_nonzero(vol.any(axis=(1, 2))) > 1  # the whole tumour spans slices
        largest = np.argmax(vol.sum(axis=(1, 2)))
        assert np.array_equal(one[largest], vol[largest]) and one.sum() == vol[largest].sum()
    for name in ("clinical.csv", "truth.csv"):
        assert (paper.folder / name).read_bytes() == (whole.folder / name).read_bytes()
    assert json.loads((whole.folder / "synth.json").read_text())["roi"] == "volume"
    # One study file for both: handcrafted features follow the masks (3D on these, 2D on the paper's).
    study = yaml.safe_load((whole.folder / "study.yaml").read_text())
    assert study == yaml.safe_load((paper.folder / "study.yaml").read_text()) and "radiomics" not in study
    with pytest.raises(ValueError, match="choose slice or volume"):
        synthesize("s1", tmp_path / "bad", n=4, roi="sphere")
    with pytest.raises(ValueError, match="bounding boxes"):
        synthesize("s3", tmp_path / "bad3", n=4, roi="volume")


def test_planted_heterogeneity_is_visible_in_the_image(tmp_path):
    res = synthesize("s2", tmp_path, n=12, seed=4, workers=2)
    m = pd.read_csv(tmp_path / "manifest.csv")
    t = pd.read_csv(tmp_path / "truth.csv").set_index("patient_id")
    sd = []
    for r in m.itertuples():
        img = read_image(tmp_path / r.image)
        a = sitk.GetArrayFromImage(img)
        k = sitk.GetArrayFromImage(read_mask(tmp_path / r.mask, img)).astype(bool)
        sd.append(np.std(a[k]))
    rho = spearmanr(sd, t.loc[m.patient_id, "heterogeneity"]).statistic
    assert rho > 0.5, rho


def test_oracle_beats_clinical_only_model():
    rng = np.random.default_rng(0)
    clinical, truth = draw_patients("s1", ["A"] * 4000, rng)
    y = clinical["label"].to_numpy()
    oracle = _auc(truth["true_risk"].to_numpy(), y)
    clin = _auc(truth["lp_clinical_only"].to_numpy(), y)
    assert 0.75 < oracle < 0.9 and clin < oracle - 0.1
    assert 0.35 < y.mean() < 0.45


@pytest.mark.parametrize("kind", ["s3", "s5"])
def test_longitudinal_and_dual_phase_kinds(tmp_path, kind):
    synthesize(kind, tmp_path, n=4, seed=1, workers=2)
    if kind == "s5":
        _same_tables(tmp_path, kind, 4, 1)
    m = pd.read_csv(tmp_path / "manifest.csv")
    c = pd.read_csv(tmp_path / "clinical.csv")
    assert {"time", "event"} <= set(c.columns) and (c.time >= 0).all()
    if kind == "s3":
        assert m.timepoint.max() >= 1 and m.bbox.notna().all() and m["mask"].isna().all()
        assert {"cea_t0", "sld_t0", "her2", "enrolled"} <= set(c.columns)
    else:
        assert set(m.phase) == {"arterial", "venous"}
        art = sitk.GetArrayFromImage(read_image(tmp_path / m[m.phase == "arterial"].image.iloc[0]))
        ven = sitk.GetArrayFromImage(read_image(tmp_path / m[m.phase == "venous"].image.iloc[0]))
        # Same anatomy (body outline), different enhancement.
        body_a, body_v = art > -500, ven > -500
        assert (body_a & body_v).sum() / (body_a | body_v).sum() > 0.99
        assert np.mean(np.abs(art - ven)[body_a & body_v]) > 5


def test_phase_enhancement_tables():
    from gastrorad.synth import anatomy as A
    from gastrorad.synth.scanners import CENTRES
    labels = np.full((4, 32, 32), A.MUSCLE, np.uint8)
    labels[:, :16] = A.AORTA
    labels[:, 16:] = A.LIVER
    hu = {ph: A.render_phase(labels, ph, CENTRES["A"], np.random.default_rng(0)) for ph in A.PHASES}
    aorta, liver = (slice(None), slice(2, 12)), (slice(None), slice(20, 30))
    assert hu["arterial"][aorta].mean() > hu["venous"][aorta].mean() + 100  # arterial peak in the aorta
    assert hu["venous"][liver].mean() > hu["arterial"][liver].mean() + 25  # portal-venous liver enhancement
