"""ComBat harmonisation (gastrorad.models.harmonize): sva::ComBat to 1e-6 on the lung data
(tests/r_reference/combat.R), a planted centre shift removed, a planted covariate effect kept,
label-free adaptation of an unseen centre, the JSON round trip, inputs that cannot be used, the
study file's harmonize section, and a tiny study run end to end with harmonisation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gastrorad.errors import InputError
from gastrorad.models.harmonize import (ComBatModel, adapt_new_centre, bh_adjust, centre_effect_share, combat,
                                        fit_combat, harmonize_cohorts, kruskal_pvalues)

R = Path(__file__).parent / "r_reference"
FEATS = ["age", "ph.karno", "pat.karno", "meal.cal", "wt.loss", "time"]

# case -> (input file, covariates, par.prior, mean.only), as combat.R calls sva::ComBat
CASES = {
    "parametric": ("combat_input.csv", None, True, False),
    "nonparametric": ("combat_input.csv", None, False, False),
    "covariate": ("combat_input.csv", ["sex"], True, False),
    "covariates_nonparametric": ("combat_input.csv", ["sex", "ph.ecog"], False, False),
    "mean_only": ("combat_input.csv", None, True, True),
    "missing": ("combat_input_missing.csv", None, True, False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_sva_combat(case):
    src, cov, par, mean_only = CASES[case]
    d = pd.read_csv(R / src)
    ref = pd.read_csv(R / f"combat_{case}.csv")
    out = combat(d[FEATS], d.inst, d[cov] if cov else None, parametric=par, mean_only=mean_only)
    assert np.array_equal(np.isnan(out.to_numpy()), np.isnan(ref.to_numpy()))
    diff = np.nanmax(np.abs(out.to_numpy() - ref.to_numpy()))
    assert diff < 1e-6, f"{case}: max |gastrorad - sva::ComBat| = {diff:.2e}"
    # and ComBat did something: the adjusted data are not the input
    assert np.nanmax(np.abs(out.to_numpy() - d[FEATS].to_numpy())) > 1e-3


def _planted(seed=0, n_per=60, p=40, shift=1.5, scale=2.0, covariate_effect=0.0):
    """Three centres; B shifted, C scaled; a biological covariate (stage) whose effect is planted
    in every feature, with a case mix that differs by centre."""
    rng = np.random.default_rng(seed)
    centre = np.repeat(["A", "B", "C"], n_per)
    stage = (rng.uniform(size=3 * n_per) < np.repeat([0.3, 0.6, 0.45], n_per)).astype(int)
    X = rng.normal(size=(3 * n_per, p)) + covariate_effect * stage[:, None]
    X[centre == "B"] += shift * rng.uniform(0.5, 1.5, size=p)
    X[centre == "C"] = (X[centre == "C"] - X[centre == "C"].mean(0)) * scale + X[centre == "C"].mean(0)
    cols = [f"f{j}" for j in range(p)]
    return pd.DataFrame(X, columns=cols), pd.Series(centre), pd.DataFrame({"stage": stage})


@pytest.mark.parametrize("parametric", [True, False])
def test_a_planted_centre_shift_is_removed(parametric):
    X, centre, _ = _planted()
    before = centre_effect_share(X, centre)
    after = centre_effect_share(fit_combat(X, centre, parametric=parametric).transform(X, centre), centre)
    assert before["share"] > 0.9 and after["share"] <= before["share"] / 2
    assert after["share"] < 0.1


def test_a_planted_covariate_effect_is_kept_when_given():
    X, centre, cov = _planted(shift=1.0, scale=1.0, covariate_effect=1.0)

    def effect(Y):  # mean difference between stages within each centre, averaged over features and centres
        return np.mean([Y[(centre == c).to_numpy() & (cov.stage == 1).to_numpy()].mean().mean()
                        - Y[(centre == c).to_numpy() & (cov.stage == 0).to_numpy()].mean().mean() for c in "ABC"])
    kept = fit_combat(X, centre, cov).transform(X, centre, cov)
    # the least-squares effect is added back as is (what differs is the residual, rescaled per centre)
    assert effect(kept) == pytest.approx(effect(X), abs=0.01)
    assert effect(kept) == pytest.approx(1.0, abs=0.15)
    assert centre_effect_share(kept, centre)["share"] < 0.1
    # the case mix differs by centre: without the covariate ComBat takes part of the stage effect for a centre effect
    blind = fit_combat(X, centre).transform(X, centre)
    stage_means = [blind[(centre == c).to_numpy()].mean().mean() for c in "ABC"]
    assert np.ptp(stage_means) < 0.05  # centres forced to the same mean although their stage mix differs
    kept_means = [kept[(centre == c).to_numpy()].mean().mean() for c in "ABC"]
    # with the covariate, each centre keeps the mean its stage mix gives it
    mix = [cov.stage[(centre == c).to_numpy()].mean() for c in "ABC"]
    np.testing.assert_allclose(np.array(kept_means) - np.mean(kept_means), np.array(mix) - np.mean(mix), atol=0.05)
    assert np.ptp(kept_means) > 0.15


def test_an_unseen_centre_is_adapted_label_free_onto_the_training_reference():
    X, centre, _ = _planted(shift=2.0)
    tr = (centre != "B").to_numpy()
    model = fit_combat(X[tr], centre[tr])
    with pytest.raises(InputError, match="not in the harmonisation"):
        model.transform(X[~tr], centre[~tr])
    left = model.transform(X[~tr], centre[~tr], unseen="identity")
    np.testing.assert_array_equal(left.to_numpy(), X[~tr].to_numpy())  # too few patients: as it is
    adapted = adapt_new_centre(model, X[~tr], centre="B")
    assert adapted.adapted == ["B"] and "B" not in model.gamma  # a copy; the training model is unchanged
    Y = adapted.transform(X[~tr], centre[~tr])
    ref = model.transform(X[tr], centre[tr])
    # B now sits where the training centres' pooled reference is
    assert np.abs(Y.mean() - ref.mean()).max() < 0.35
    pair = pd.concat([ref, Y]), pd.concat([centre[tr], centre[~tr]])
    assert centre_effect_share(*pair)["share"] < centre_effect_share(pd.concat([ref, X[~tr]]), pair[1])["share"] / 2
    # one training centre: it is the reference, left as it is; a new centre is mapped onto it
    a = (centre == "A").to_numpy()
    one = fit_combat(X[a], centre[a])
    np.testing.assert_allclose(one.transform(X[a], centre[a]).to_numpy(), X[a].to_numpy(), atol=1e-12)
    moved = adapt_new_centre(one, X[~tr], centre="B").transform(X[~tr], centre[~tr])
    assert np.abs(moved.mean() - X[a].mean()).max() < 0.35


def test_json_round_trip_gives_the_same_transform():
    X, centre, cov = _planted(covariate_effect=0.5)
    cov["site_kind"] = np.where(cov.stage == 1, "x", "y")
    cov.loc[3, "site_kind"] = None  # imputed with the training mode
    model = adapt_new_centre(fit_combat(X[centre != "C"], centre[centre != "C"], cov[centre != "C"],
                                        parametric=False), X[centre == "C"], cov[centre == "C"], centre="C")
    back = ComBatModel.from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_array_equal(back.transform(X, centre, cov).to_numpy(), model.transform(X, centre, cov).to_numpy())
    assert back.adapted == ["C"] and back.training_centres == ["A", "B"]
    with pytest.raises(InputError, match="cannot be read"):
        ComBatModel.from_dict({"features": ["a"]})


def test_inputs_that_cannot_be_used_are_clear():
    X, centre, cov = _planted()
    X.loc[(centre == "B").to_numpy(), "f1"] = 3.0  # constant within a centre: left as it is everywhere (as sva)
    X.loc[5, "f2"] = np.nan                          # a missing value stays missing
    model = fit_combat(X, centre)
    Y = model.transform(X, centre)
    np.testing.assert_array_equal(Y.f1, X.f1)
    assert np.isnan(Y.loc[5, "f2"]) and np.isfinite(Y.drop(index=5).to_numpy()).all()
    assert any("constant" in n for n in model.notes)
    # a one-patient centre: the mean-only model (as sva), said in the notes
    one = pd.concat([centre[:-1], pd.Series(["D"])], ignore_index=True)
    m1 = fit_combat(X, one)
    assert m1.mean_only and any("one patient" in n for n in m1.notes)
    assert np.allclose(m1.delta["A"], 1.0)
    # a covariate constant within each centre cannot be told from the centre
    with pytest.raises(InputError, match="confounded with the centre"):
        fit_combat(X, centre, pd.DataFrame({"scanner": centre.map({"A": 0, "B": 1, "C": 2})}))
    with pytest.raises(InputError, match="no centre"):
        fit_combat(X, centre.where(centre != "C", None))
    with pytest.raises(InputError, match="infinite"):
        fit_combat(X.assign(f3=np.inf), centre)
    with pytest.raises(InputError, match="missing"):
        model.transform(X.drop(columns=["f4"]), centre)
    with pytest.raises(InputError, match="covariates"):
        fit_combat(X, centre, cov).transform(X, centre, None)
    # harmonize_cohorts: no centre column, or a covariate that is not a column
    rows = X.assign(patient_id=[f"P{i}" for i in range(len(X))], cohort="training")
    with pytest.raises(InputError, match="'center' column"):
        harmonize_cohorts(rows, list(X.columns))
    with pytest.raises(InputError, match="no clinical column 'grade'"):
        harmonize_cohorts(rows.assign(center=centre.to_numpy()), list(X.columns), covariates=["grade"])


def test_a_spike_is_left_as_it_is_in_a_study():
    """A ReLU unit that rarely fires (mostly zeros): moving it would put every zero of a centre on a
    value of its own, a centre effect ComBat made; the study's harmonisation leaves it as it is."""
    X, centre, _ = _planted()
    X["relu"] = np.where(np.random.default_rng(1).uniform(size=len(X)) < 0.8, 0.0, 1.0 + (centre == "B").to_numpy())
    rows = X.assign(patient_id=[f"P{i}" for i in range(len(X))], center=centre.to_numpy(),
                    cohort=np.where(centre == "C", "external", "training"))
    out, model, record = harmonize_cohorts(rows, list(X.columns), new_centre_min=20)
    np.testing.assert_array_equal(out.relu, X.relu)
    assert record["adapted"] == {"C": 60} and record["centres_seen"] == {"A": 60, "B": 60}
    assert any("spike" in n for n in record["notes"])
    out2, _, record2 = harmonize_cohorts(rows, list(X.columns), new_centre_min=61)
    assert record2["left_as_is"] == {"C": 60}
    np.testing.assert_array_equal(out2.loc[(centre == "C").to_numpy(), "f0"], X.loc[(centre == "C").to_numpy(), "f0"])


def test_kruskal_wallis_and_bh_match_scipy_and_r():
    from scipy import stats
    rng = np.random.default_rng(3)
    X = np.round(rng.normal(size=(45, 12)), 1)  # ties
    X[:15, 0] += 2
    X[4, 3] = np.nan
    c = np.repeat(["a", "b", "c"], 15)
    ref = [stats.kruskal(*[X[c == g, j][~np.isnan(X[c == g, j])] for g in "abc"]).pvalue for j in range(12)]
    np.testing.assert_allclose(kruskal_pvalues(X, c), ref, rtol=1e-10)
    # p.adjust(c(0.01, 0.04, 0.03, 0.2, NA), "BH") = 0.04 0.0533333333333333 0.0533333333333333 0.2 NA
    np.testing.assert_allclose(bh_adjust(np.array([0.01, 0.04, 0.03, 0.2, np.nan])),
                               [0.04, 0.16 / 3, 0.16 / 3, 0.2, np.nan], rtol=1e-12)


def test_study_file_refuses_the_outcome_as_a_covariate(s1_study):
    import yaml

    from gastrorad.config.study import load_study
    raw = yaml.safe_load((s1_study / "study.yaml").read_text())
    raw["harmonize"] = {"method": "combat", "covariates": ["label"]}
    path = s1_study.parent / "harmonize_outcome.yaml"
    path.write_text(yaml.safe_dump({**raw, "data": {k: str(s1_study / v) for k, v in raw["data"].items()}}))
    with pytest.raises(InputError, match="outcome column"):
        load_study(path)
    raw["harmonize"] = {"method": "combat", "covariates": ["center"]}
    path.write_text(yaml.safe_dump({**raw, "data": {k: str(s1_study / v) for k, v in raw["data"].items()}}))
    with pytest.raises(InputError, match="cannot be a covariate"):
        load_study(path)
    raw["harmonize"] = {"method": "combat", "covariates": ["age"], "apply_to": ["deep"], "parametric": False}
    path.write_text(yaml.safe_dump({**raw, "data": {k: str(s1_study / v) for k, v in raw["data"].items()}}))
    cfg = load_study(path)
    assert cfg.harmonize.enabled and cfg.harmonize.new_centre_min == 20 and cfg.harmonize.unseen_centres == "adapt"


def test_new_patients_of_a_known_a_new_and_a_small_centre():
    from gastrorad.models.harmonize import harmonize_new_patients
    X, centre, _ = _planted(shift=2.0)
    tr = (centre == "A").to_numpy() | (centre == "B").to_numpy()
    stored = fit_combat(X[tr], centre[tr]).to_dict()
    feats = X.assign(patient_id=[f"P{i}" for i in range(len(X))])[["patient_id", *X.columns]]
    clin = pd.DataFrame({"patient_id": feats.patient_id, "center": np.where(centre == "C", "Z", centre)})
    said = []
    out = harmonize_new_patients(feats, clin, stored, new_centre_min=20, label="deep venous", log=said.append)
    assert said == ["harmonize: deep venous: centre Z is new to the model: adapted label-free from the 60 patients "
                    "of this batch"]
    ref = ComBatModel.from_dict(stored).transform(X[tr], centre[tr])
    np.testing.assert_allclose(out.loc[tr, X.columns].to_numpy(), ref.to_numpy(), atol=1e-12)  # known: stored
    assert np.abs(out.loc[~tr, X.columns].mean() - ref.mean()).max() < 0.35                   # new: adapted
    said.clear()
    small = harmonize_new_patients(feats[~tr].head(10), clin, stored, new_centre_min=20, label="deep venous",
                                   log=said.append)
    assert "WARNING" in said[0] and "fewer than harmonize.new_centre_min = 20" in said[0]
    np.testing.assert_array_equal(small[X.columns].to_numpy(), X[~tr].head(10).to_numpy())  # as they are


def test_a_harmonised_study_runs_reports_bundles_and_predicts_new_centres(tmp_path):
    """S1 (60 patients: A 33 in training/internal, B 12 and C 15 external) with ComBat and
    new_centre_min 13: C is adapted label-free, B left as it is with a warning. predict then meets
    C relabelled Z (15 patients: adapted from the batch, as the run adapted C) and 5 of B relabelled Y
    (too few: as they are, as B in the run): every prediction equals the run's."""
    import yaml

    from gastrorad.bundle import predict_patients
    from gastrorad.config.study import load_study
    from gastrorad.runner import run_study
    from gastrorad.synth import synthesize
    from test_zoo import TINY  # the recipes' frozen-feature path scaled down
    data = synthesize("s1", tmp_path / "s1", n=60, seed=5, workers=2, matrix_scale=0.5).folder
    raw = {**TINY, "name": "harmonised", "outcome": {"kind": "binary", "label": "label"},
           "cohorts": {"split": {"centers": ["A"], "ratio": {"training": 7, "internal": 3}},
                       "external": {"B": "external1", "C": "external2"}},
           "clinical": {"variables": ["age"], "selection": {"screen_p": None, "method": "none"}},
           "harmonize": {"method": "combat", "new_centre_min": 13},
           "data": {"manifest": str(data / "manifest.csv"), "clinical": str(data / "clinical.csv"),
                    "truth": str(data / "truth.csv")}, "output": str(tmp_path / "run")}
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_study(study)
    said: list[str] = []
    status = run_study(cfg, log=said.append)
    assert status["bundle"] == "ran", status
    out = cfg.output_dir
    text = "\n".join(said)
    assert "centre C (not in training) adapted label-free from its 15 patients" in text
    assert "WARNING deep venous: centre B is not in training and is left as it is (12 patient(s) < " \
           "harmonize.new_centre_min = 13)" in text
    info = json.loads((out / "signatures.json").read_text())
    for kind in ("deep", "handcrafted"):
        rec = info["harmonize"][kind]["venous"]
        assert rec["centres_seen"] == {"A": 23} and rec["adapted"] == {"C": 15} and rec["left_as_is"] == {"B": 12}
        eff = info["centre_effects"][kind]["venous"]
        assert eff["before"]["centres"] == ["A", "B", "C"] and "after" in eff
    assert set(json.loads((out / "harmonize.json").read_text())) == {"deep", "handcrafted"}
    html = (out / "report.html").read_text()
    assert "Centre effects and harmonisation" in html and 'data-metric="centre_effects|deep|venous|after"' in html
    assert (out / "figures" / "centre_effects" / "deep_venous.png").is_file()
    assert "adapted label-free from their own features" in html  # TRIPOD+AI item 7
    assert "harmonize.json" in json.loads((out / "bundle" / "bundle.json").read_text())["files"]

    clin = pd.read_csv(data / "clinical.csv", dtype={"patient_id": str})
    b = clin.index[clin.center == "B"][:5]
    clin.loc[clin.center == "C", "center"] = "Z"
    clin.loc[b, "center"] = "Y"
    clin.to_csv(tmp_path / "new_clinical.csv", index=False)
    said.clear()
    res = predict_patients(out / "bundle", data / "manifest.csv", tmp_path / "pred",
                           clinical=tmp_path / "new_clinical.csv", gradcam=False, log=said.append)
    text = "\n".join(said)
    assert "centre Z is new to the model: adapted label-free from the 15 patients of this batch" in text
    assert "WARNING deep venous: centre Y is new to the model (5 patient(s) here" in text
    run_preds = pd.read_csv(out / "predictions.csv", dtype={"patient_id": str}).dropna(subset=["score"])
    both = run_preds.merge(res.predictions, on=["patient_id", "model"], suffixes=("_run", "_new"))
    assert len(both) == len(run_preds) > 0
    np.testing.assert_allclose(both.score_new, both.score_run, rtol=0, atol=1e-6)


def test_validate_names_what_combat_needs(s1_copy):
    import yaml

    from gastrorad.config.study import load_study
    from gastrorad.data import validate_study
    raw = yaml.safe_load((s1_copy / "study.yaml").read_text())
    raw["harmonize"] = {"method": "combat", "covariates": ["grade"]}
    (s1_copy / "study.yaml").write_text(yaml.safe_dump(raw))
    clin = pd.read_csv(s1_copy / "clinical.csv", dtype={"patient_id": str})
    clin.loc[1, "center"] = None
    clin.to_csv(s1_copy / "clinical.csv", index=False)
    errors = validate_study(load_study(s1_copy / "study.yaml"), check_images=False).errors
    said = {(p.column, p.row, p.reason.split(":")[0]) for p in errors}
    assert ("grade", None, "unknown column") in said
    assert ("center", 3, "no centre") in said
