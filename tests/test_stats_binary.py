"""Binary-outcome statistics against R (pROC 1.18, Hmisc 4.8, rms 6.5).

Reference values come from tests/r_reference/binary.R (run it to regenerate
binary.json); the data are pROC's aSAH (../shared/data) and the seeded hard cases in
binary_cases.csv (heavy ties, a tiny sample, perfect separation). Deterministic maths is
asserted to 1e-6; bootstrap intervals (different random streams) to Monte Carlo error.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import shared_path
from gastrorad import stats as S

REF_DIR = Path(__file__).parent / "r_reference"
REF = json.loads((REF_DIR / "binary.json").read_text())
CASES = pd.read_csv(REF_DIR / "binary_cases.csv")
MODELS = pd.read_csv(REF_DIR / "asah_models.csv")
TOL = 1e-6


def _data(name):
    if name == "asah":
        d = pd.read_csv(shared_path("clinical", "aSAH.csv"))
        return (d.outcome == "Poor").astype(int).to_numpy(), d.s100b.to_numpy(), d.ndka.to_numpy()
    d = CASES[CASES.dataset == name]
    return d.y.to_numpy(), d.a.to_numpy(), d.b.to_numpy()


@pytest.mark.parametrize("name", ["asah", "ties", "tiny", "perfect"])
def test_auc_delong_variance_ci_and_paired_test(name):
    y, a, b = _data(name)
    r = REF[name]
    aucs, cov = S.delong_covariance(y, a, b)
    assert aucs == pytest.approx([r["auc_a"], r["auc_b"]], abs=TOL)
    assert cov[0, 0] == pytest.approx(r["var_a"], abs=TOL)
    assert cov[1, 1] == pytest.approx(r["var_b"], abs=TOL)
    assert cov[0, 1] == pytest.approx(r["cov_ab"], abs=TOL)
    ci = S.auc_ci_delong(y, a)
    assert [ci.lower, ci.upper] == pytest.approx(r["ci_a"], abs=TOL)
    t = S.delong_test(y, a, b)
    assert t.z == pytest.approx(r["z"], abs=1e-5)
    assert t.p_value == pytest.approx(r["p"], abs=TOL, rel=1e-5)
    table = S.delong_compare(y, {"b": b, "a": a}, reference="b").set_index("model")
    assert table.loc["a", ["lower", "upper"]].to_numpy(float) == pytest.approx(r["ci_a"], abs=TOL)
    assert table.loc["a", "z"] == pytest.approx(r["z"], abs=1e-5) or not np.isfinite(r["z"])


@pytest.mark.parametrize("name", ["asah", "ties", "tiny", "perfect"])
def test_roc_curve_and_youden_match_proc(name):
    y, a, _ = _data(name)
    r = REF[name]
    curve = S.roc_curve(y, a)
    thr = np.asarray([np.inf if v == "Inf" else -np.inf if v == "-Inf" else v for v in r["roc_thresholds"]], float)
    assert np.allclose(curve.thresholds, thr, atol=TOL)
    assert np.allclose(curve.sensitivity, r["roc_sens"], atol=TOL)
    assert np.allclose(curve.specificity, r["roc_spec"], atol=TOL)
    cut = S.youden_cutoff(y, a)
    best = np.atleast_1d(r["youden_thresholds"])
    assert cut == pytest.approx(float(np.min(best)), abs=TOL)
    m = S.classification_metrics(y, a, cut).table.set_index("metric")
    assert m.loc["sensitivity", "estimate"] == pytest.approx(np.atleast_1d(r["youden_sens"])[0], abs=TOL)
    assert m.loc["specificity", "estimate"] == pytest.approx(np.atleast_1d(r["youden_spec"])[0], abs=TOL)


def test_positive_means_score_at_or_above_threshold():
    y, a, _ = _data("asah")
    m = S.classification_metrics(y, a, 0.13).table.set_index("metric")
    ref = REF["asah"]["at_observed"][0]
    assert m.loc["sensitivity", "estimate"] == pytest.approx(ref["sensitivity"], abs=TOL)
    assert m.loc["specificity", "estimate"] == pytest.approx(ref["specificity"], abs=TOL)


def test_metrics_with_exact_cis_at_the_youden_cutoff():
    y, a, _ = _data("asah")
    ref = REF["metrics"]
    m = S.classification_metrics(y, a, ref["threshold"]).table.set_index("metric")
    for name in ("accuracy", "sensitivity", "specificity", "ppv", "npv"):
        assert m.loc[name, ["estimate", "lower", "upper"]].to_numpy(float) == pytest.approx(ref[name], abs=TOL)
    tab = S.confusion_matrix(y, a, ref["threshold"])
    assert tab.to_numpy().sum() == len(y) and tab.loc[1, 1] == m.loc["sensitivity", "numerator"]


def test_bootstrap_ci_agrees_with_proc_within_monte_carlo_error():
    y, a, _ = _data("asah")
    ci = S.auc_ci_bootstrap(y, a, n_boot=2000, seed=1)
    assert ci.estimate == pytest.approx(REF["asah"]["auc_a"], abs=TOL)
    assert [ci.lower, ci.upper] == pytest.approx(REF["asah"]["boot_ci"], abs=0.015)
    again = S.auc_ci_bootstrap(y, a, n_boot=2000, seed=1)
    assert np.array_equal(ci.replicates, again.replicates)  # seeded


def test_vectorised_bootstrap_equals_naive_resampling():
    y, a, b = _data("ties")
    reps = S.bootstrap_auc_replicates(y, a, b, n_boot=50, seed=3)
    rng = np.random.default_rng(3)
    cases, controls = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    dc = rng.integers(0, len(cases), size=(50, len(cases)))
    dn = rng.integers(0, len(controls), size=(50, len(controls)))
    for i in range(50):
        idx = np.concatenate([cases[dc[i]], controls[dn[i]]])
        assert reps[i, 0] == pytest.approx(S.auc(y[idx], a[idx]), abs=1e-12)
        assert reps[i, 1] == pytest.approx(S.auc(y[idx], b[idx]), abs=1e-12)


@pytest.mark.parametrize("key,categories", [("improveProb", None), ("improveProb_categorical", [0.2, 0.4])])
def test_nri_idi_match_hmisc_improveprob(key, categories):
    ref = REF[key]
    t = S.nri_idi(MODELS.y, MODELS.p_old, MODELS.p_new, categories=categories).table
    assert t.loc["nri", "estimate"] == pytest.approx(ref["nri"], abs=TOL)
    assert t.loc["nri", "se"] == pytest.approx(ref["se_nri"], abs=TOL)
    assert t.loc["nri", "z"] == pytest.approx(ref["z_nri"], abs=1e-5)
    assert t.loc["nri_events", ["estimate", "se"]].to_numpy(float) == pytest.approx([ref["nri_ev"], ref["se_nri_ev"]], abs=TOL)
    assert t.loc["nri_nonevents", ["estimate", "se"]].to_numpy(float) == pytest.approx([ref["nri_ne"], ref["se_nri_ne"]], abs=TOL)
    if categories is None:  # improveProb's IDI on class codes is not the IDI of probabilities
        assert t.loc["idi", ["estimate", "se", "z"]].to_numpy(float) == pytest.approx(
            [ref["idi"], ref["se_idi"], ref["z_idi"]], abs=1e-5)


@pytest.mark.parametrize("col,key", [("p_new", "val_prob"), ("p_mis", "val_prob_miscalibrated")])
def test_calibration_statistics_match_rms_val_prob(col, key):
    ref = REF[key]
    c = S.calibration_statistics(MODELS.y, MODELS[col])
    assert c.intercept == pytest.approx(ref["Intercept"], abs=1e-6)
    assert c.slope == pytest.approx(ref["Slope"], abs=1e-6)
    assert c.brier == pytest.approx(ref["Brier"], abs=TOL)
    assert c.spiegelhalter_z == pytest.approx(ref["S:z"], abs=TOL)
    assert c.spiegelhalter_p == pytest.approx(ref["S:p"], abs=TOL)
    assert c.emax == pytest.approx(ref["Emax"], abs=1e-6)
    assert c.eavg == pytest.approx(ref["Eavg"], abs=1e-6)
    assert c.e90 == pytest.approx(ref["E90"], abs=1e-6)


@pytest.mark.parametrize("col,key", [("p_new", "hosmer_lemeshow"), ("p_mis", "hosmer_lemeshow_miscalibrated")])
def test_hosmer_lemeshow(col, key):
    hl = S.hosmer_lemeshow(MODELS.y, MODELS[col], g=10)
    assert hl.statistic == pytest.approx(REF[key]["statistic"], abs=TOL)
    assert hl.df == 8 and hl.p_value == pytest.approx(REF[key]["p"], abs=TOL)


def test_net_benefit_and_decision_curve():
    ref = REF["net_benefit"]
    nb = S.net_benefit(MODELS.y, MODELS.p_new, ref["thresholds"])
    assert nb == pytest.approx(ref["nb"], abs=TOL)
    dc = S.decision_curve(MODELS.y, {"new": MODELS.p_new}, thresholds=[0.1, 0.2], n_boot=200, seed=0)
    allrow = dc[(dc.model == "treat_all") & (dc.threshold == 0.1)].net_benefit.iloc[0]
    prev = MODELS.y.mean()
    assert allrow == pytest.approx(prev - (1 - prev) * 0.1 / 0.9)
    new = dc[dc.model == "new"]
    assert (new.lower <= new.net_benefit).all() and (new.net_benefit <= new.upper).all()


def test_average_precision_by_hand():
    y = np.array([1, 0, 1, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.1])
    curve, ap = S.precision_recall(y, s)
    # thresholds 0.9, 0.8, 0.7, 0.4: recall steps 1/3 at precisions 1, 2/3, 3/4
    assert ap == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert curve.recall.max() == 1.0


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="single class"):
        S.auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="0/1"):
        S.auc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="do not match"):
        S.auc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="missing"):
        S.auc([0, 1, 1], [0.1, np.nan, 0.3])


def _logistic_procedure(cols):
    import statsmodels.api as sm

    def fit(df):
        X = sm.add_constant(df[cols].to_numpy(float), has_constant="add")
        beta = sm.Logit(df["y"].to_numpy(float), X).fit(disp=0, method="newton", tol=1e-10).params

        def predict(new):
            return sm.add_constant(new[cols].to_numpy(float), has_constant="add") @ beta
        return predict
    return fit


def test_bootstrap_validation_against_rms_validate():
    ref = REF["validate"]
    idx = {k: i for i, k in enumerate(ref["index"])}
    d = pd.read_csv(shared_path("clinical", "aSAH.csv"))
    d["y"] = (d.outcome == "Poor").astype(int)
    v = S.bootstrap_validate(d, _logistic_procedure(["age", "wfns", "s100b"]), outcome="y", n_boot=300, seed=3)
    # Apparent indices are deterministic: equal to rms to 1e-6.
    assert v.loc["Dxy", "index.orig"] == pytest.approx(ref["orig"][idx["Dxy"]], abs=1e-6)
    assert v.loc["Slope", "index.orig"] == pytest.approx(1.0, abs=1e-6)
    assert v.loc["Intercept", "index.orig"] == pytest.approx(0.0, abs=1e-6)
    assert v.loc["Brier", "index.orig"] == pytest.approx(ref["orig"][idx["B"]], abs=1e-6)
    # Optimism-corrected values: equal within Monte Carlo error of two different random streams.
    assert v.loc["Dxy", "index.corrected"] == pytest.approx(ref["corrected"][idx["Dxy"]], abs=0.02)
    assert v.loc["Slope", "index.corrected"] == pytest.approx(ref["corrected"][idx["Slope"]], abs=0.04)
    assert v.loc["Brier", "index.corrected"] == pytest.approx(ref["corrected"][idx["B"]], abs=0.006)
    assert v.loc["Dxy", "optimism"] > 0 and v.loc["Slope", "index.corrected"] < 1


def test_performance_table_binary_and_survival():
    rng = np.random.default_rng(5)
    rows = []
    for cohort, n in (("training", 200), ("internal", 120)):
        y = (rng.uniform(size=n) < 0.4).astype(int)
        clin = 1 / (1 + np.exp(-(0.6 * y - 0.5 + rng.normal(size=n))))
        full = 1 / (1 + np.exp(-(1.6 * y - 0.8 + rng.normal(size=n))))
        for i in range(n):
            rows += [{"patient_id": f"{cohort}{i}", "cohort": cohort, "model": "clinical", "score": clin[i], "label": y[i]},
                     {"patient_id": f"{cohort}{i}", "cohort": cohort, "model": "integrated", "score": full[i], "label": y[i]}]
    pred = pd.DataFrame(rows)
    t = S.performance_table(pred, reference="clinical")
    assert list(t.cohort.unique()) == ["training", "internal"] and len(t) == 4
    internal = pred[pred.cohort == "internal"].pivot(index="patient_id", columns="model", values="score")
    y = pred[pred.cohort == "internal"].drop_duplicates("patient_id").set_index("patient_id").loc[internal.index, "label"]
    row = t[(t.cohort == "internal") & (t.model == "integrated")].iloc[0]
    assert row.auc_or_c == pytest.approx(S.auc(y, internal.integrated))
    assert row.p == pytest.approx(S.delong_test(y, internal.integrated, internal.clinical).p_value)
    assert row.nri == pytest.approx(S.nri_idi(y, internal.clinical, internal.integrated).table.loc["nri", "estimate"])


def test_hosmer_lemeshow_refuses_a_single_predicted_value():
    """R's cut() stops when every prediction is the same; so does gastrorad, with a reason."""
    import numpy as np
    import pytest

    from gastrorad.stats import hosmer_lemeshow
    with pytest.raises(ValueError, match="single value"):
        hosmer_lemeshow(np.array([0, 1, 0, 1, 1, 0]), np.full(6, 0.4))
