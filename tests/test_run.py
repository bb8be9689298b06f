"""The study runner end to end: every recipe on a tiny synthetic cohort, the numbers agreeing
across artefacts (report = metrics JSON = CSV), the report opening in headless Chromium,
resume after a killed run, and the model bundle reproducing the run's own scores."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import pytest
import yaml

from gastrorad.config.study import deep_merge, load_study
from gastrorad.errors import InputError
from gastrorad.recipes import find_study_file, list_recipes
from gastrorad.runner import run_study

# What makes a recipe's fast profile tiny enough for a test: small patches, two epochs.
TINY = {
    "s1_nact_resistance": {"preprocess": {"patch": {"mode": "stack25d", "size": [32, 32]}},
                           "training": {"epochs": 2}, "evaluation": {"bootstrap": 20}, "report": {"gradcam": 2}},
    "s2_recurrence": {"preprocess": {"patch": {"mode": "volume3d", "size": [32, 32]}},
                      "training": {"epochs": 2, "folds": 2}, "evaluation": {"bootstrap": 20},
                      "report": {"gradcam": 2}},
    "s4_progressive_distill": {"preprocess": {"patch": {"mode": "slices", "size": [40, 40]}},
                               "augment": {"random_crop": [32, 32]}, "training": {"epochs": 2},
                               "evaluation": {"bootstrap": 20}, "report": {"gradcam": 2}},
    "s3_her2_longitudinal": {"preprocess": {"patch": {"mode": "bbox", "size": [32, 32]}},
                             "training": {"epochs": 2}, "longitudinal": {"dim": 16, "seeds": [0, 1]},
                             "evaluation": {"bootstrap": 20}, "report": {"gradcam": 2}},
    "s5_gnen_survival": {"preprocess": {"patch": {"mode": "roi_slices", "size": [32, 32]}},
                         "model": {"backbone": "tiny"},
                         # a tiny random network at 32 px barely separates patients: a lower ICC bar for the test
                         "signature": {"nlambda": 10, "nfolds": 3, "icc_threshold": 0.3},
                         "evaluation": {"bootstrap": 20}},
}
# The trained paths are what these tests exercise (training, resume, Grad-CAM, predict of a trained model): S1's
# `scratch`, S2's `scratch` (the paper's CNN, scaled down) and S4's `distill`; S3's `fast` trains its formers over
# a frozen ROI extractor. Their `fast` frozen-feature paths are
# S5's `fast` path (run here) on their own data; S1's runs end to end in test_cli's demo test.
PROFILE = {"s1_nact_resistance": "scratch", "s2_recurrence": "scratch", "s4_progressive_distill": "distill"}
KIND = {"s1_nact_resistance": ("s1", 60), "s2_recurrence": ("s2", 40), "s4_progressive_distill": ("s4", 24),
        "s3_her2_longitudinal": ("s3", 30),
        "s5_gnen_survival": ("s5", 40)}


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    """Synthetic cohorts of each recipe's kind, made once per test module (small matrices)."""
    from gastrorad.synth import synthesize
    root = tmp_path_factory.mktemp("cohorts")
    made = {}

    def get(recipe: str) -> Path:
        if recipe not in made:
            kind, n = KIND[recipe]
            made[recipe] = synthesize(kind, root / kind, n=n, seed=5, workers=2, matrix_scale=0.5).folder
        return made[recipe]
    return get


def tiny_study(recipe: str, data: Path, out: Path, extra: dict | None = None) -> Path:
    """The recipe with its fast profile and the test's tiny settings, written as one study file."""
    raw = yaml.safe_load(find_study_file(recipe).read_text())
    profiles = raw.pop("profiles")
    raw = deep_merge(deep_merge(raw, profiles[PROFILE.get(recipe, "fast")]), TINY[recipe])
    raw = deep_merge(raw, extra or {})
    raw["data"] = {"manifest": str(data / "manifest.csv"), "clinical": str(data / "clinical.csv"),
                   "truth": str(data / "truth.csv")}
    raw["output"] = str(out)
    path = out.parent / f"{recipe}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def check_consistency(out: Path, bundle: bool = True) -> dict:
    """Every artefact exists and the report, metrics JSON and CSV carry the same numbers."""
    for rel in ("config.resolved.yaml", "versions.json", "run.json", "patches.csv", "signatures.csv",
                "predictions.csv", "models/fit.json", "metrics/metrics.json", "metrics/performance.csv",
                "metrics/headline.csv", "report.html") + (("bundle/bundle.json",) if bundle else ()):
        assert (out / rel).is_file(), rel
    m = json.loads((out / "metrics" / "metrics.json").read_text())
    perf_csv = pd.read_csv(out / "metrics" / "performance.csv")
    perf_json = pd.DataFrame(m["tables"]["performance"])
    assert len(perf_json) == len(perf_csv) > 0
    np.testing.assert_allclose(perf_json.auc_or_c.to_numpy(float), perf_csv.auc_or_c.to_numpy(float), rtol=0,
                               atol=1e-12)
    html = (out / "report.html").read_text()
    shown = dict(re.findall(r'data-metric="performance\|([^"]+)\|auc_or_c">([0-9.]+)<', html))
    assert len(shown) == len(perf_json)
    for r in m["tables"]["performance"]:
        assert shown[f"{r['cohort']}|{r['model']}"] == f"{r['auc_or_c']:.3f}"
    oracle = {r["cohort"]: r["oracle"] for r in m["tables"]["oracle"]}
    assert oracle, "a synthetic study must report the oracle"
    for cohort, value in re.findall(r'data-metric="oracle\|([^|]+)\|\|oracle">([0-9.]+)<', html):
        assert value == f"{oracle[cohort]:.3f}"
    for kind, paths in m["figures"].items():
        for rel in paths:
            assert (out / rel).is_file() and (out / rel).with_suffix(".svg").is_file(), rel
    assert "<img" in html and 'src="data:image/png;base64,' in html and "file://" not in html
    return m


def test_recipes_are_listed_and_load_with_their_fast_profile():
    recipes = list_recipes()
    assert set(KIND) <= set(recipes)
    for name in KIND:
        full = load_study(recipes[name])
        fast = load_study(recipes[name], profile="fast")
        assert fast.profile == "fast" and full.profile is None
        assert full.preprocess.window.bounds == fast.preprocess.window.bounds  # the profile keeps the paper's window
    with pytest.raises(InputError, match="no profile 'nope'"):
        load_study(recipes["s1_nact_resistance"], profile="nope")
    s1 = load_study(recipes["s1_nact_resistance"])
    assert (s1.preprocess.window.bounds, s1.preprocess.patch.mode, s1.model.backbone) == ((-350, 450), "stack25d",
                                                                                          "resnet50")
    assert s1.preprocess.patch.context_slices == 5 and s1.preprocess.patch.mask_channel


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["s2_recurrence", "s3_her2_longitudinal", "s4_progressive_distill",
                                    "s5_gnen_survival"])
def test_recipe_end_to_end(recipe, cohorts, tmp_path):
    study = tiny_study(recipe, cohorts(recipe), tmp_path / "run")
    cfg = load_study(study)
    status = run_study(cfg, log=lambda m: None)
    assert all(v in ("ran", "skipped") for v in status.values())
    m = check_consistency(cfg.output_dir)
    # R's warnings of the fits (issue 13 item 7) reach the report: each one recorded in a stage stamp is listed
    from gastrorad.report.html import stage_warnings
    html_text = (cfg.output_dir / "report.html").read_text()
    for w in stage_warnings(cfg.output_dir):
        assert "Warnings from the analysis" in html_text and w["message"][:60] in html.unescape(html_text)
    assert m["outcome"] == cfg.outcome.kind
    if recipe in ("s2_recurrence", "s5_gnen_survival"):  # handcrafted features follow the masks: VOIs / one slice
        hcr = json.loads((cfg.output_dir / "radiomics.json").read_text())
        assert hcr["settings"]["force2d"] is (recipe == "s5_gnen_survival"), hcr
    if recipe == "s5_gnen_survival":
        assert {"Deep signature (arterial)", "Deep signature (venous)", "combined"} <= set(m["models"])
        assert m["tables"]["time_auc"] and m["tables"]["risk_groups"]
        assert status["train"] == "skipped" and status["extract-features"] == "ran"
        sig = json.loads((cfg.output_dir / "signatures.json").read_text())
        # the manifest's re-segmented ROIs (reader r2) feed the ICC filter of every phase
        assert set(sig["icc"]) == {"arterial", "venous"}
        assert all(0 < v["kept"] <= v["of"] for v in sig["icc"].values())
        readers = pd.read_csv(cfg.output_dir / "features_venous_readers.csv")
        assert set(readers.reader) == {"r1", "r2"}
        # the handcrafted reference passes the same ICC filter (like for like), on its own re-segmentation table
        hcr_readers = pd.read_csv(cfg.output_dir / "radiomics_venous_readers.csv", dtype={"patient_id": str})
        assert set(hcr_readers.reader) == {"r1", "r2"}
        assert hcr_readers.groupby("reader").size().to_dict() == readers.groupby("reader").size().to_dict()
        for phase in ("arterial", "venous"):
            icc = sig["radiomics"][phase]["icc"]
            assert 0 < icc["kept"] <= icc["of"]
    if recipe == "s3_her2_longitudinal":
        assert {"Nomo-LDLM-2F", "Nomo-w/o-TDLM-2F", "RECIST-2F", "TB-delta-2F"} <= set(m["models"])
        scores = pd.read_csv(cfg.output_dir / "dl_scores.csv")
        assert {"ldlm_BS", "ldlm_1F", "ldlm_2F", "tdlm_BS", "tdlm_2F"} <= set(scores.columns)
        # the fast profile's LDLM: a frozen ROI extractor z-scored on training (its scale saved with the model)
        ck = torch.load(json.loads((cfg.output_dir / "models" / "longitudinal.json").read_text())["ldlm"][0],
                        weights_only=True)
        assert {"extractor.mean", "extractor.scale"} <= set(ck["state_dict"]) and float(ck["state_dict"][
            "extractor.scale"].min()) > 0
        rep = pd.DataFrame(m["tables"]["reproducibility"])
        assert set(rep.seeds) == {2} and rep.c_sd.notna().all()
        sites = pd.DataFrame(m["tables"]["attention_sites"])
        assert {"stomach"} <= set(sites.site) and set(sites.risk_group) <= {"high", "low"}
        # the S3 bundle applied to the run's own patients gives the run's scores
        from gastrorad.bundle import predict_patients
        data = cohorts(recipe)
        res = predict_patients(cfg.output_dir / "bundle", data / "manifest.csv", tmp_path / "pred",
                               clinical=data / "clinical.csv", gradcam=False)
        run_preds = pd.read_csv(cfg.output_dir / "predictions.csv", dtype={"patient_id": str}).dropna(subset=["score"])
        both = run_preds.merge(res.predictions, on=["patient_id", "model"], suffixes=("_run", "_new"))
        assert len(both) == len(run_preds)
        np.testing.assert_allclose(both.score_new, both.score_run, rtol=0, atol=1e-6)
        assert m["figures"]["attention"] and (cfg.output_dir / "explain" / "gradcam.csv").exists()
        skipped = json.loads((cfg.output_dir / "models" / "fit.json").read_text())["selection"].get(
            "nomograms_skipped", {})
        for name in ("Nomo-LDLM-2F", "Nomo-w/o-TDLM-2F"):  # the nomogram and its variant without TDLM
            stem = name.replace("/", "_")
            # drawn, or (a Cox fit that separates on 30 synthetic patients) skipped with the reason
            drawn = (cfg.output_dir / "figures" / f"nomogram_{stem}.png").is_file()
            assert drawn != (name in skipped) and (drawn or "unstable" in skipped[name]), skipped
            assert (cfg.output_dir / "models" / f"{stem}_coefficients.csv").is_file()
        tauc = pd.DataFrame(m["tables"]["time_auc"])
        assert {"lower", "upper"} <= set(tauc.columns) and (tauc.horizon == 12).all()
    if recipe == "s2_recurrence":
        assert "DLFS" in m["models"]
        assert m["tables"]["subgroups"], "S2 reports AUCs with and without chemotherapy"
        # k-fold training: each training patient's out-of-fold score is the one fold model that held it out, and
        # the fusion models are fitted on it (not on the 2-model mean that saw the patient)
        scores = pd.read_csv(cfg.output_dir / "dl_scores.csv", dtype={"patient_id": str})
        tr = scores[scores.cohort == "training"]
        assert tr.score_oof.notna().all() and scores[scores.cohort != "training"].score_oof.isna().all()
        assert not np.allclose(tr.score_oof, tr.score)
        fit = json.loads((cfg.output_dir / "models" / "fit.json").read_text())
        assert fit["signature_training_values"]["dl_score"] == "pre-validated (out-of-fold)"
    if recipe == "s5_gnen_survival":  # the bagged LASSO-Cox signatures: fusion on their out-of-fold values
        fit = json.loads((cfg.output_dir / "models" / "fit.json").read_text())
        assert set(fit["signature_training_values"].values()) == {"pre-validated (out-of-fold)"}
        pv = pd.read_csv(cfg.output_dir / "signatures_prevalidated.csv", dtype={"patient_id": str})
        sig = pd.read_csv(cfg.output_dir / "signatures.csv", dtype={"patient_id": str})
        assert set(pv.patient_id) == set(sig[sig.cohort == "training"].patient_id)
    # a second run finds everything in the cache
    again = run_study(cfg, log=lambda m: None)
    assert all(v in ("cached", "skipped") for v in again.values()), again


@pytest.mark.slow
def test_s1_run_report_bundle_and_predict(cohorts, tmp_path):
    data = cohorts("s1_nact_resistance")
    study = tiny_study("s1_nact_resistance", data, tmp_path / "run")
    cfg = load_study(study)
    run_study(cfg, log=lambda m: None)
    out = cfg.output_dir
    m = check_consistency(out)
    fit = json.loads((out / "models" / "fit.json").read_text())
    expected = {"DL signature", "integrated"} | ({"clinical"} if fit["selection"]["clinical_terms"] else set())
    assert set(m["models"]) == expected | {"Handcrafted radiomics signature (venous)"}  # the reference every study fits
    assert set(fit["selection"].get("skipped_models", {})) == {"clinical"} - expected
    assert "hcr_venous" not in fit["signature_columns"]  # a reference, not a fusion ingredient
    comp = m["tables"]["signature_comparison"]
    assert {r["deep"] for r in comp} == {"DL signature"} and all(0 <= r["p"] <= 1 for r in comp)
    assert m["tables"]["classification"] and m["tables"]["calibration"] and m["tables"]["confusion"]
    assert (out / "explain" / "gradcam.csv").exists()

    # the report opens offline in headless Chromium with no broken image
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); the rest of this test passed")
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                          "--dump-dom", (out / "report.html").as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    body = re.search(r"<body([^>]*)>", dom).group(1)
    images = int(re.search(r'data-images="(\d+)"', body).group(1))
    assert images >= len(m["figures"]["roc"]) + 1
    assert re.search(r'data-broken-images="0"', body), body


@pytest.mark.slow
def test_predict_reproduces_the_run_and_refuses_mismatched_inputs(cohorts, tmp_path):
    from gastrorad.bundle import predict_patients
    data = cohorts("s1_nact_resistance")
    cfg = load_study(tiny_study("s1_nact_resistance", data, tmp_path / "run", {"report": {"gradcam": 0}}))
    run_study(cfg, log=lambda m: None)
    bundle = cfg.output_dir / "bundle"
    res = predict_patients(bundle, data / "manifest.csv", tmp_path / "pred", clinical=data / "clinical.csv")
    run_preds = pd.read_csv(cfg.output_dir / "predictions.csv", dtype={"patient_id": str})
    both = run_preds.merge(res.predictions, on=["patient_id", "model"], suffixes=("_run", "_new"))
    assert len(both) == len(run_preds)
    np.testing.assert_allclose(both.score_new, both.score_run, rtol=0, atol=1e-9)
    assert (both.risk_group_new == both.risk_group_run).all()
    # nomogram points map back to the model's own linear predictor
    fit = json.loads((bundle / "fit.json").read_text())
    spec = fit["models"][fit["nomogram_model"]]
    nomo = res.predictions[res.predictions.model == fit["nomogram_model"]]
    lp = spec["intercept"] + sum(min(a["xbeta"]) for a in spec["nomogram"]["axes"]) \
        + nomo.points_total / spec["nomogram"]["sc"]
    np.testing.assert_allclose(lp, nomo.lp, atol=1e-9)
    assert list((tmp_path / "pred" / "explain").rglob("*.png")), "Grad-CAM overlays for the new patients"

    # issue 12 item 11: `gastrorad predict BUNDLE patients.csv` with the default (relative) --out, the first
    # thing a new user types, failed with "predictions/inputs/manifest.csv: table does not exist"
    from typer.testing import CliRunner

    from gastrorad.cli import app
    work = tmp_path / "work"
    work.mkdir()
    cwd = os.getcwd()
    try:
        os.chdir(work)
        cli = CliRunner().invoke(app, ["predict", str(bundle), str(data / "manifest.csv"), "--clinical",
                                       str(data / "clinical.csv"), "--no-gradcam"])
    finally:
        os.chdir(cwd)
    assert cli.exit_code == 0, (cli.output, cli.exception)
    assert (work / "predictions" / "predictions.csv").exists()

    # issue 12 item 12, as issue 28 item 2 changed it: a failed predict into the folder of an earlier one
    # leaves the earlier prediction whole (its predictions.csv beside its own inputs), nothing of its own
    assert (tmp_path / "pred" / "predictions.csv").exists()
    def outputs():  # the prediction folder's files and contents, its cache aside
        pred = tmp_path / "pred"
        return {f.relative_to(pred): f.read_bytes() for f in pred.rglob("*")
                if f.is_file() and f.relative_to(pred).parts[0] != "cache"}
    earlier = outputs()
    cut = pd.read_csv(data / "manifest.csv", dtype={"patient_id": str})
    cut["image"] = [str((data / p).resolve()) for p in cut.image]
    cut["mask"] = [str((data / p).resolve()) for p in cut["mask"]]
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(Path(cut.image[0]).read_bytes()[:2000])
    cut.loc[0, "image"] = str(broken)
    cut.to_csv(tmp_path / "cut.csv", index=False)
    with pytest.raises(InputError, match="truncated") as exc:
        predict_patients(bundle, tmp_path / "cut.csv", tmp_path / "pred", clinical=data / "clinical.csv")
    # and the message names the user's patients file and row, not predict's working copy (item "messages")
    assert (exc.value.problems[0].file, exc.value.problems[0].row) == (str(tmp_path / "cut.csv"), 2), exc.value
    assert outputs() == earlier

    # a missing phase, a missing clinical variable, a changed weights file: refused with the reason
    manifest = pd.read_csv(data / "manifest.csv", dtype={"patient_id": str})
    manifest["image"] = [str((data / p).resolve()) for p in manifest.image]
    manifest["mask"] = [str((data / p).resolve()) for p in manifest["mask"]]
    wrong = manifest.assign(phase="arterial")
    wrong.to_csv(tmp_path / "arterial.csv", index=False)
    with pytest.raises(InputError, match="has no 'venous' image"):
        predict_patients(bundle, tmp_path / "arterial.csv", tmp_path / "p2", clinical=data / "clinical.csv")
    clinical = pd.read_csv(data / "clinical.csv", dtype={"patient_id": str})
    needed = json.loads((bundle / "bundle.json").read_text())["clinical_required"]
    if needed:
        clinical.drop(columns=[needed[0]]).to_csv(tmp_path / "clin.csv", index=False)
        with pytest.raises(InputError) as exc:
            predict_patients(bundle, data / "manifest.csv", tmp_path / "p3", clinical=tmp_path / "clin.csv")
        assert exc.value.problems[0].column == needed[0]
    # clinical values given as columns of the patients file work the same way
    combined = manifest.merge(clinical, on="patient_id").drop(columns=["label"])
    combined.to_csv(tmp_path / "combined.csv", index=False)
    res2 = predict_patients(bundle, tmp_path / "combined.csv", tmp_path / "p4", gradcam=False)
    np.testing.assert_allclose(res2.predictions.sort_values(["model", "patient_id"]).score.to_numpy(),
                               res.predictions.sort_values(["model", "patient_id"]).score.to_numpy(), atol=1e-9)
    # issue 12 item 3: bundle.json pointed at weights outside its hash list, or outside the bundle, is refused
    manifest_path = bundle / "bundle.json"
    original = manifest_path.read_text()
    shutil.copy2(bundle / "weights" / "model0.pt", bundle / "weights" / "other.pt")
    edited = json.loads(original)
    edited["weights"] = ["weights/other.pt"]
    manifest_path.write_text(json.dumps(edited))
    with pytest.raises(InputError, match="not in the bundle's SHA-256 list"):
        predict_patients(bundle, data / "manifest.csv", tmp_path / "p6", clinical=data / "clinical.csv")
    edited["weights"] = ["../escaped.pt"]
    manifest_path.write_text(json.dumps(edited))
    with pytest.raises(InputError, match="outside the bundle folder"):
        predict_patients(bundle, data / "manifest.csv", tmp_path / "p7", clinical=data / "clinical.csv")
    manifest_path.write_text(original)
    weights = bundle / "weights" / "model0.pt"
    weights.write_bytes(weights.read_bytes() + b"\0")
    with pytest.raises(InputError, match="changed since export"):
        predict_patients(bundle, data / "manifest.csv", tmp_path / "p5", clinical=data / "clinical.csv")


@pytest.mark.slow
def test_a_killed_run_resumes_without_recomputing(cohorts, tmp_path):
    data = cohorts("s1_nact_resistance")
    # enough epochs that training is still running when the run is killed
    study = tiny_study("s1_nact_resistance", data, tmp_path / "run", {"training": {"epochs": 400, "early_stopping":
                                                                                    None}, "report": {"gradcam": 0}})
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "gastrorad.cli", "run", str(study)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    stamp = out / ".run" / "preprocess.json"
    deadline = time.time() + 300
    while not stamp.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert stamp.exists(), "the run never finished preprocessing"
    time.sleep(2.0)  # now inside training
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / ".run" / "train.json").exists()
    patches_before = {p: p.stat().st_mtime_ns for p in (out / "cache").rglob("*.npz")}
    assert patches_before
    # resume (with fewer epochs, as a user would after changing their mind): validate and preprocess are reused
    raw = yaml.safe_load(study.read_text())
    raw["training"]["epochs"] = 2
    study.write_text(yaml.safe_dump(raw))
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for stage, word in (("validate", "cached"), ("preprocess", "cached"), ("train", "running"), ("report", "done")):
        assert re.search(rf"^\s*{stage}\s+{word}", res.stdout, re.M), (stage, res.stdout[-2000:])
    assert {p: p.stat().st_mtime_ns for p in (out / "cache").rglob("*.npz")} == patches_before
    check_consistency(out)
    history = json.loads((out / "run.json").read_text())["history"]
    assert history[-1]["status"]["preprocess"] == "cached" and history[-1]["status"]["train"] == "ran"
    # --from reruns from a stage on; a changed evaluation setting reruns evaluate and report only
    raw["evaluation"]["bootstrap"] = 10
    study.write_text(yaml.safe_dump(raw))
    status = run_study(load_study(study), log=lambda m: None)
    assert status["fit"] == "cached" and status["evaluate"] == "ran" and status["report"] == "ran"
    status = run_study(load_study(study), start="fit", log=lambda m: None)
    assert status["signature"] == "cached" and status["fit"] == "ran"


def test_statistics_warnings_are_recorded_per_stage_and_listed(s1_study, tmp_path, monkeypatch):
    """Issue 13 item 7: a fit R would warn about (separation, no convergence) warns in the API, is
    printed by the run, kept in the stage's stamp and listed in the report."""
    import warnings

    import gastrorad.runner as r
    from gastrorad.errors import StatisticsWarning
    from gastrorad.report.html import stage_warnings
    cfg = load_study(s1_study / "study.yaml")
    cfg.output = tmp_path / "run"
    stage = next(s for s in r.STAGES if s.name == "validate")

    def warn_twice(c):
        for _ in range(2):
            warnings.warn("logistic model (x): glm.fit: fitted probabilities numerically 0 or 1 occurred",
                          StatisticsWarning)
        warnings.warn("a library's own deprecation", FutureWarning)
    monkeypatch.setattr(stage, "run", warn_twice)
    lines = []
    with pytest.warns(FutureWarning):  # other warnings pass through untouched
        run_study(cfg, only=["validate"], log=lines.append)
    assert any("warning: logistic model (x): glm.fit" in ln and "(x2)" in ln for ln in lines), lines
    assert stage_warnings(cfg.output_dir) == [{"stage": "validate", "count": 2, "message":
                                               "logistic model (x): glm.fit: fitted probabilities numerically 0 "
                                               "or 1 occurred"}]


def test_a_two_worker_dask_run_gives_the_serial_runs_patches_and_metrics(cohorts, tmp_path):
    """Issue 15's done-when: `compute: {workers: 2}` (a LocalCluster) and `compute: {scheduler: serial}` give
    byte-identical patches, the same handcrafted and deep features and identical metrics."""
    data = cohorts("s1_nact_resistance")
    extra = {"report": {"gradcam": 0}, "evaluation": {"bootstrap": 20}}
    runs = {}
    for name, compute in (("dask", {"workers": 2}), ("serial", {"scheduler": "serial"})):
        out = tmp_path / name / "run"
        out.parent.mkdir()
        # the fast profile: frozen deep features + LASSO, and the handcrafted reference (both per patient)
        raw = yaml.safe_load(find_study_file("s1_nact_resistance").read_text())
        raw = deep_merge(deep_merge(raw, raw.pop("profiles")["fast"]), extra)
        raw["data"] = {"manifest": str(data / "manifest.csv"), "clinical": str(data / "clinical.csv"),
                       "truth": str(data / "truth.csv")}
        raw.update(output=str(out), compute=compute)
        study = out.parent / "study.yaml"
        study.write_text(yaml.safe_dump(raw, sort_keys=False))
        run_study(load_study(study), log=lambda m: None)
        runs[name] = out
    dask, serial = runs["dask"], runs["serial"]
    pa = pd.read_csv(dask / "patches.csv", dtype=str, keep_default_na=False)
    pb = pd.read_csv(serial / "patches.csv", dtype=str, keep_default_na=False)
    assert list(pa.key) == list(pb.key) and len(pa) > 0
    for a, b in zip(pa.path, pb.path):
        assert Path(a).read_bytes() == Path(b).read_bytes()
    for table in ("radiomics_venous.csv", "features_venous.csv", "signatures.csv", "predictions.csv",
                  "metrics/performance.csv"):
        ta, tb = pd.read_csv(dask / table), pd.read_csv(serial / table)
        pd.testing.assert_frame_equal(ta, tb, check_exact=True, obj=table)
