"""The study zoo: the shapes of studies users bring, each run end to end (run -> report -> bundle
-> predict) on a tiny synthetic cohort with the frozen-feature deep path:

- image-only (no clinical section), one centre without a ``center`` column, no external cohort;
- cohorts given by a column; survival with two phases;
- lesion-level: several lesions per patient, a column names the patient;
- a tiny study with separation: a warning, the run finishes, the nomogram skipped with its reason.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from gastrorad.config.study import load_study
from gastrorad.runner import run_study

#: The frozen-feature deep path of the recipes' fast profile, scaled down: two tiny random CNNs on a 48 px patch.
TINY = {
    "seed": 1,
    "preprocess": {"spacing": None, "normalize": "zero_one", "workers": 1,
                   "patch": {"mode": "slice2d", "side_mm": 80.0, "size": [48, 48], "mask_channel": True}},
    "model": {"backbone": "tiny"},
    "features": {"stages": "all", "pooling": ["avg", "max", "roi_avg", "roi_std"], "networks": 2},
    "signature": {"method": "lasso", "nfolds": 5, "nlambda": 20, "bagging": "network"},
    "radiomics": {"classes": ["firstorder", "shape"], "nfolds": 3, "workers": 1},
    "evaluation": {"bootstrap": 0},
    "report": {"gradcam": 0},
    "compute": {"scheduler": "serial"},
}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Synthetic cohorts made once for the module: S1 (binary, one phase) and S5 (survival, two phases)."""
    from gastrorad.synth import synthesize
    root = tmp_path_factory.mktemp("zoo")
    made = {}

    def get(kind: str, n: int) -> Path:
        if (kind, n) not in made:
            made[kind, n] = synthesize(kind, root / f"{kind}_{n}", n=n, seed=5, workers=2, matrix_scale=0.5).folder
        return made[kind, n]
    return get


def write_study(folder: Path, study: dict, manifest: Path | None, clinical: Path) -> Path:
    raw = {**TINY, **study}
    raw["data"] = {**({"manifest": str(manifest)} if manifest else {}), "clinical": str(clinical),
                   **study.get("data", {})}
    raw["output"] = str(folder / "run")
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_and_predict(study: Path, manifest: Path | None, clinical: Path, tmp_path: Path):
    """Run every stage, then apply the bundle to the same patients: the bundle's scores equal the run's."""
    from gastrorad.bundle import predict_patients
    cfg = load_study(study)
    status = run_study(cfg, log=lambda m: None)
    assert status["report"] == "ran" and status["bundle"] == "ran", status
    out = cfg.output_dir
    m = json.loads((out / "metrics" / "metrics.json").read_text())
    res = predict_patients(out / "bundle", manifest if manifest else clinical, tmp_path / "pred",
                           clinical=clinical, gradcam=False)
    run_preds = pd.read_csv(out / "predictions.csv", dtype={"patient_id": str}).dropna(subset=["score"])
    both = run_preds.merge(res.predictions, on=["patient_id", "model"], suffixes=("_run", "_new"))
    assert len(both) == len(run_preds) > 0
    np.testing.assert_allclose(both.score_new, both.score_run, rtol=0, atol=1e-6)
    return cfg, m


def test_image_only_single_centre_no_center_column(zoo, tmp_path):
    data = zoo("s1", 60)
    clinical = pd.read_csv(data / "clinical.csv")[["patient_id", "label"]]  # no centre, no clinical variable
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    study = write_study(tmp_path, {"name": "image_only", "outcome": {"kind": "binary", "label": "label"},
                                   "cohorts": {"split": {"ratio": {"training": 7, "internal": 3}}}},
                        data / "manifest.csv", tmp_path / "clinical.csv")
    cfg = load_study(study)
    assert cfg.fusion.models == {"image": ["signature"]} and cfg.fusion.nomogram == "image"
    assert cfg.evaluation.reference == "handcrafted"
    cfg, m = run_and_predict(study, data / "manifest.csv", tmp_path / "clinical.csv", tmp_path)
    assert set(m["cohorts"]) == {"training", "internal"}
    assert {"Deep signature (venous)", "Handcrafted radiomics signature (venous)", "image"} <= set(m["models"])
    assert m["reference_model"] == "Handcrafted radiomics signature (venous)"
    assert (cfg.output_dir / "figures" / "nomogram_image.png").is_file()
    perf = pd.DataFrame(m["tables"]["performance"])
    # NRI/IDI on probabilities: the handcrafted signature's refit is the reference itself (no NRI). The image
    # model is a logistic recalibration of the deep signature fitted on its pre-validated (out-of-fold) training
    # values, so it ranks patients as the signature does (the same AUC) with a slope a new patient would see,
    # not the in-sample refit's (whose NRI equalled the signature's own)
    tr = perf[perf.cohort == "training"].set_index("model")
    assert np.isnan(tr.loc["Handcrafted radiomics signature (venous)", "nri"])
    assert tr.loc["image", "auc_or_c"] == pytest.approx(tr.loc["Deep signature (venous)", "auc_or_c"], abs=1e-12)
    fit = json.loads((cfg.output_dir / "models" / "fit.json").read_text())
    assert fit["signature_training_values"] == {"rad_venous": "pre-validated (out-of-fold)"}
    html = (cfg.output_dir / "report.html").read_text()
    assert "rad_venous" not in html.split("Resolved study file")[0]
    # a handcrafted LASSO that keeps no feature (constant signature) is left out with its reason; the
    # comparisons fall back to the first model instead of failing on a reference that has no scores
    from gastrorad.evaluation import evaluate_study
    sig = pd.read_csv(cfg.output_dir / "signatures.csv")
    sig.assign(hcr_venous=-0.5).to_csv(cfg.output_dir / "signatures.csv", index=False)
    res = evaluate_study(cfg, figures=False)
    assert "Handcrafted radiomics signature (venous)" not in res.metrics["models"]
    assert res.metrics["reference_model"] == "Deep signature (venous)"
    assert "constant" in res.metrics["signature_probabilities"]["Handcrafted radiomics signature (venous)"]


def test_cohorts_by_column_survival_two_phases(zoo, tmp_path):
    data = zoo("s5", 40)
    clinical = pd.read_csv(data / "clinical.csv")
    rng = np.random.default_rng(0)
    clinical["split"] = np.where(rng.uniform(size=len(clinical)) < 0.7, "training", "external1")
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    study = write_study(tmp_path, {
        "name": "survival_two_phases", "outcome": {"kind": "survival", "time": "time", "event": "event"},
        "cohorts": {"column": "split"},
        "clinical": {"variables": ["age", "ki67"], "selection": {"screen_p": None, "method": "none"}},
        "preprocess": {**TINY["preprocess"], "phases": ["arterial", "venous"]},
        "signature": {**TINY["signature"], "icc_from_readers": False},
        "fusion": {"models": {"clinical": ["clinical"], "combined": ["signature", "clinical"]},
                   "cutoff": "median", "nomogram": "combined"},  # no nomogram_horizons: the evaluation's
        "evaluation": {"bootstrap": 0, "horizons": [12]}}, data / "manifest.csv", tmp_path / "clinical.csv")
    cfg, m = run_and_predict(study, data / "manifest.csv", tmp_path / "clinical.csv", tmp_path)
    assert set(m["cohorts"]) == {"training", "external1"}
    assert {"Deep signature (arterial)", "Deep signature (venous)", "combined", "clinical"} <= set(m["models"])


def test_lesion_level_patients_stay_together(zoo, tmp_path):
    data = zoo("s1", 60)
    clinical = pd.read_csv(data / "clinical.csv", dtype={"patient_id": str})
    # two lesions per patient: each synthetic case is a lesion, pairs of them one patient
    clinical["patient"] = [f"P{i // 2:03d}" for i in range(len(clinical))]
    clinical["center"] = clinical.groupby("patient").center.transform("first")
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    study = write_study(tmp_path, {
        "name": "lesions", "outcome": {"kind": "binary", "label": "label"},
        "data": {"patient_column": "patient"},
        "cohorts": {"split": {"centers": ["A", "B"], "ratio": {"training": 7, "internal": 3}}},
        "clinical": {"variables": ["age"], "selection": {"screen_p": None, "method": "none"}}},
        data / "manifest.csv", tmp_path / "clinical.csv")
    cfg, m = run_and_predict(study, data / "manifest.csv", tmp_path / "clinical.csv", tmp_path)
    preds = pd.read_csv(cfg.output_dir / "predictions.csv", dtype={"patient_id": str})
    cohort_of = preds.drop_duplicates("patient_id").set_index("patient_id").cohort
    per_patient = clinical.assign(cohort=clinical.patient_id.map(cohort_of)).groupby("patient").cohort.nunique()
    assert (per_patient == 1).all(), "a patient's lesions went to two cohorts"


def test_lesion_rows_split_by_hand_across_cohorts_are_refused(zoo, tmp_path):
    from gastrorad.data import validate_study
    data = zoo("s1", 60)
    clinical = pd.read_csv(data / "clinical.csv", dtype={"patient_id": str})
    clinical["patient"] = [f"P{i // 2:03d}" for i in range(len(clinical))]
    clinical["split"] = ["training", "internal"] * (len(clinical) // 2)  # each patient's two lesions split
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    study = write_study(tmp_path, {"name": "bad_lesions", "outcome": {"kind": "binary", "label": "label"},
                                   "data": {"patient_column": "patient"}, "cohorts": {"column": "split"}},
                        data / "manifest.csv", tmp_path / "clinical.csv")
    rep = validate_study(load_study(study), check_images=False)
    bad = [p for p in rep.errors if "lesions must stay in one cohort" in p.reason]
    assert len(bad) == len(clinical) // 2 and bad[0].column == "patient" and bad[0].row == 3


def test_tiny_study_with_separation_finishes(zoo, tmp_path):
    """24 patients and a clinical model: the fits separate; a warning, no traceback, the nomogram
    skipped with its reason (or drawn when the fit is stable)."""
    data = zoo("s1", 24)
    study = write_study(tmp_path, {
        "name": "tiny", "outcome": {"kind": "binary", "label": "label"},
        "cohorts": {"split": {"centers": ["A", "B", "C"], "ratio": {"training": 7, "internal": 3}}},
        "clinical": {"variables": ["age", "cea", "ca199", "bmi"], "selection": {"screen_p": None, "method": "none"}},
        "signature": {**TINY["signature"], "lambda_rule": "min"}},
        data / "manifest.csv", data / "clinical.csv")
    cfg, m = run_and_predict(study, data / "manifest.csv", data / "clinical.csv", tmp_path)
    fit = json.loads((cfg.output_dir / "models" / "fit.json").read_text())
    skipped = fit["selection"].get("nomograms_skipped", {})
    drawn = (cfg.output_dir / "figures" / "nomogram_integrated.png").is_file()
    assert drawn != ("integrated" in skipped)
    if skipped:
        assert "unstable" in skipped["integrated"]


def test_clinical_only_no_images(zoo, tmp_path):
    data = zoo("s1", 60)
    study = write_study(tmp_path, {
        "name": "clinical_only", "outcome": {"kind": "binary", "label": "label"},
        "cohorts": {"split": {"centers": ["A"], "ratio": {"training": 7, "internal": 3}},
                    "external": {"B": "external1", "C": "external2"}},
        "clinical": {"variables": ["age", "cea", "ct"], "categorical": ["ct"],
                     "selection": {"screen_p": None, "method": "none"}}}, None, data / "clinical.csv")
    cfg = load_study(study)
    assert cfg.fusion.models == {"clinical": ["clinical"]} and cfg.fusion.nomogram == "clinical"
    cfg, m = run_and_predict(study, None, data / "clinical.csv", tmp_path)
    status = json.loads((cfg.output_dir / "run.json").read_text())["history"][-1]["status"]
    assert {s for s, v in status.items() if v == "skipped"} >= {"preprocess", "extract-features", "radiomics"}
    assert m["models"] == ["clinical"]


def test_shape_problems_fail_at_load_not_after_minutes(zoo, tmp_path):
    """Models that cannot exist are refused when the study file is read, naming the key."""
    from gastrorad.errors import InputError
    data = zoo("s1", 60)
    base = {"name": "bad", "outcome": {"kind": "binary", "label": "label"},
            "cohorts": {"split": {"ratio": {"training": 7, "internal": 3}}}}
    cases = [
        ({"fusion": {"models": {"integrated": ["signature", "clinical"]}}}, "needs clinical variables"),
        ({"clinical": {"variables": ["age"]}, "fusion": {"models": {"m": ["signature", "agee"]}, "nomogram": "m"}},
         "unknown ingredient 'agee'"),
        ({"clinical": {"variables": ["age"]}, "fusion": {"nomogram": "combined"}}, "'combined' is not one of"),
        ({"clinical": {"variables": ["age"]}, "evaluation": {"reference": "clinicl"}}, "evaluation.reference"),
        ({"clinical": {"variables": ["age"]}, "outcome": {"kind": "survival"}, "fusion": {"cutoff": "youden"}},
         "Youden cut-off on a survival"),
    ]
    for extra, words in cases:
        study = write_study(tmp_path, {**base, **extra}, data / "manifest.csv", data / "clinical.csv")
        with pytest.raises(InputError, match=words):
            load_study(study)
    study = write_study(tmp_path, {**base, "clinical": {"variables": ["age"]}}, None, data / "clinical.csv")
    study.write_text(study.read_text().replace("variables:\n  - age\n", "variables: []\n"))
    with pytest.raises(InputError, match="nothing to model"):
        load_study(study)
