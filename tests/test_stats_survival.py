"""Survival statistics against R's survival 3.5 (tests/r_reference/survival.R -> survival.json).

Data: survival's lung and veteran, asaur's gastricXelox (../shared/data/clinical) and the
seeded hard cases in survival_cases.csv (ties in time and score, everyone censored after
t = 30). Deterministic maths to 1e-6.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import shared_path
from gastrorad.stats import survival as SV

REF_DIR = Path(__file__).parent / "r_reference"
REF = json.loads((REF_DIR / "survival.json").read_text())
HARD = pd.read_csv(REF_DIR / "survival_cases.csv")
LUNG = pd.read_csv(REF_DIR / "lung_complete.csv")
TOL = 1e-6


def _lung():
    d = pd.read_csv(shared_path("clinical", "lung.csv"))
    return d.assign(event=(d.status == 2).astype(int))


def _nan(v):
    return np.array([np.nan if x in (None, "NA", "NaN") else x for x in np.atleast_1d(v)], dtype=float)


@pytest.mark.parametrize("key,conf", [("km_lung", "log"), ("km_xelox_loglog", "log-log"), ("km_hard", "log")])
def test_kaplan_meier_matches_survfit(key, conf):
    if key == "km_lung":
        d = _lung()
        t, e = d.time, d.event
    elif key == "km_xelox_loglog":
        d = pd.read_csv(shared_path("clinical", "gastricXelox.csv"))
        t, e = d.timeWeeks, d.delta
    else:
        t, e = HARD.time, HARD.event
    ref = REF[key]
    km = SV.kaplan_meier(t, e, conf_type=conf)
    tab = km.table
    assert tab.time.tolist() == pytest.approx(ref["time"])
    assert tab.n_risk.tolist() == ref["n_risk"] and tab.n_event.tolist() == ref["n_event"]
    assert tab.n_censor.tolist() == ref["n_censor"]
    assert np.allclose(tab.surv, ref["surv"], atol=TOL)
    assert np.allclose(tab.std_err, _nan(ref["std_err"]), atol=TOL, equal_nan=True)
    assert np.allclose(tab.lower, _nan(ref["lower"]), atol=TOL, equal_nan=True)
    assert np.allclose(tab.upper, _nan(ref["upper"]), atol=TOL, equal_nan=True)
    for mine, theirs in ((km.median, ref["median"]), (km.median_lower, ref["median_lower"]),
                         (km.median_upper, ref["median_upper"])):
        assert np.allclose(mine, _nan(theirs)[0], equal_nan=True)


@pytest.mark.parametrize("key", ["logrank_lung_sex", "logrank_veteran_celltype", "logrank_hard_group"])
def test_logrank_matches_survdiff(key):
    if key == "logrank_lung_sex":
        d = _lung()
        res = SV.logrank_test(d.time, d.event, d.sex)
    elif key == "logrank_veteran_celltype":
        d = pd.read_csv(shared_path("clinical", "veteran.csv"))
        res = SV.logrank_test(d.time, d.status, d.celltype)
    else:
        res = SV.logrank_test(HARD.time, HARD.event, HARD.group)
    ref = REF[key]
    assert res.statistic == pytest.approx(ref["chisq"], abs=TOL)
    assert res.p_value == pytest.approx(ref["p"], abs=TOL)
    assert res.table.observed.tolist() == pytest.approx(ref["obs"])
    assert np.allclose(res.table.expected, ref["exp"], atol=TOL)


@pytest.mark.parametrize("key", ["cox_lung", "cox_hard"])
def test_cox_and_zph_match_coxph(key):
    if key == "cox_lung":
        fit = SV.fit_cox(LUNG, "time", "event", ["age", "sex", "ph.ecog"])
    else:
        fit = SV.fit_cox(HARD, "time", "event", ["x", "z"])
    ref = REF[key]
    assert np.allclose(fit.coef, ref["coef"], atol=TOL)
    assert np.allclose(fit.table.se, ref["se"], atol=TOL)
    assert fit.loglik == pytest.approx(ref["loglik"], abs=1e-5)
    assert np.allclose(fit.table.hr_lower, np.exp(np.array(ref["coef"]) - 1.959963984540054 * np.array(ref["se"])),
                       atol=1e-6)
    for transform in ("km", "identity"):
        z = SV.cox_zph(fit, transform=transform).table
        r = ref[f"zph_{transform}"]
        assert np.allclose(z.chisq, r["chisq"], atol=1e-5), (transform, z.chisq.tolist(), r["chisq"])
        assert z.df.tolist() == r["df"]
        assert np.allclose(z.p, r["p"], atol=1e-5)


@pytest.mark.parametrize("key", ["conc_lung", "conc_veteran_karno", "conc_hard"])
def test_harrell_and_uno_c_match_concordance(key):
    if key == "conc_lung":
        fit = SV.fit_cox(LUNG, "time", "event", ["age", "sex", "ph.ecog"])
        t, e, r = LUNG.time, LUNG.event, fit.linear_predictor(LUNG)
    elif key == "conc_veteran_karno":
        d = pd.read_csv(shared_path("clinical", "veteran.csv"))
        t, e, r = d.time, d.status, -d.karno
    else:
        t, e, r = HARD.time, HARD.event, HARD.x
    ref = REF[key]
    h = SV.harrell_c(t, e, r)
    assert [h.concordant, h.discordant, h.tied_risk] == pytest.approx(ref["counts"])
    assert h.c == pytest.approx(ref["c"], abs=TOL)
    assert h.se == pytest.approx(ref["se"], abs=TOL)
    u = SV.uno_c(t, e, r)
    assert u.c == pytest.approx(ref["uno"], abs=TOL)
    assert u.se == pytest.approx(ref["uno_se"], abs=TOL)


@pytest.mark.parametrize("key", ["td_auc_lung", "td_auc_hard"])
def test_time_dependent_auc(key):
    ref = REF[key]
    if key == "td_auc_lung":
        fit = SV.fit_cox(LUNG, "time", "event", ["age", "sex", "ph.ecog"])
        t, e, r = LUNG.time, LUNG.event, fit.linear_predictor(LUNG)
    else:
        t, e, r = HARD.time, HARD.event, HARD.x
    res = SV.time_dependent_auc(t, e, r, ref["horizons"])
    assert np.allclose(res.auc, ref["auc"], atol=TOL)


def test_risk_groups_locked_cutoff():
    fit = SV.fit_cox(LUNG, "time", "event", ["age", "sex", "ph.ecog"])
    lp = fit.linear_predictor(LUNG)
    cut = float(np.median(lp))
    rg = SV.risk_groups(LUNG.time, LUNG.event, lp, cut)
    assert rg.hr > 1 and rg.hr_lower < rg.hr < rg.hr_upper
    lr = SV.logrank_test(LUNG.time, LUNG.event, np.where(lp >= cut, "high", "low"))
    assert rg.logrank_p == pytest.approx(lr.p_value)
    with pytest.raises(ValueError, match="one risk group"):
        SV.risk_groups(LUNG.time, LUNG.event, lp, lp.max() + 1)


def test_t_year_calibration_matches_rms_groupkm():
    ref = REF["groupkm_365"]
    s365 = pd.read_csv(REF_DIR / "lung_s365.csv").S365  # R's predicted 1-year survival (coxph + basehaz)
    c = SV.survival_calibration(LUNG.time, LUNG.event, s365, 365, groups=5)
    assert c.n.tolist() == ref["n"] and c.events.tolist() == ref["events"]
    assert np.allclose(c.predicted, ref["x"], atol=TOL)
    assert np.allclose(c.observed, ref["KM"], atol=TOL)
    assert np.allclose(c.std_err, ref["std_err"], atol=TOL)
    assert 0.5 < SV.observed_expected(LUNG.time, LUNG.event, s365, 365) < 1.5


def test_survival_net_benefit():
    ref = REF["survival_nb_365"]
    s365 = pd.read_csv(REF_DIR / "lung_s365.csv").S365
    nb = SV.survival_net_benefit(LUNG.time, LUNG.event, 1 - s365, 365, ref["thresholds"])
    assert np.allclose(nb[nb.model == "model"].net_benefit, ref["nb"], atol=TOL)
    assert (nb[nb.model == "treat_none"].net_benefit == 0).all()


def test_compare_c_joint_variance_matches_concordance_of_two_fits():
    ref = REF["compare_c"]
    full = SV.fit_cox(LUNG, "time", "event", ["age", "sex", "ph.ecog"]).linear_predictor(LUNG)
    age = SV.fit_cox(LUNG, "time", "event", ["age"]).linear_predictor(LUNG)
    t = SV.compare_c(LUNG.time, LUNG.event, {"full": full, "age": age}, reference="age").set_index("model")
    assert t.c.tolist() == pytest.approx([ref["c"][0], ref["c"][1]], abs=TOL)
    v = np.array(ref["var"])
    assert t.loc["full", "se"] == pytest.approx(np.sqrt(v[0, 0]), abs=TOL)
    se_diff = np.sqrt(v[0, 0] + v[1, 1] - 2 * v[0, 1])
    assert t.loc["full", "z"] == pytest.approx((ref["c"][0] - ref["c"][1]) / se_diff, abs=1e-5)


GAPS = json.loads((REF_DIR / "stats_gaps.json").read_text())  # issue 13 (stats_gaps.R)


@pytest.mark.parametrize("case", GAPS["km_median"], ids=lambda c: c["name"])
@pytest.mark.parametrize("conf", ["log", "log-log", "plain"])
def test_km_median_and_ci_follow_quantile_survfit(case, conf):
    """Item 5: S = 0.5 over a flat stretch -> midpoint to the next drop of S (hand10: 11.5,
    not 8.5 at the censoring time 9); a limit that never reaches 0.5 gives no CI limit."""
    km = SV.kaplan_meier(case["time"], case["event"], conf_type=conf)
    ref = case[conf]
    for mine, theirs in ((km.median, ref["median"]), (km.median_lower, ref["lower"]),
                         (km.median_upper, ref["upper"])):
        assert np.allclose(mine, _nan(theirs)[0], equal_nan=True, atol=TOL)


@pytest.mark.parametrize("key", ["zph_veteran", "zph_lung"])
@pytest.mark.parametrize("transform", ["rank", "log", "km"])
def test_cox_zph_rank_and_log_transforms_match_r(key, transform):
    """Item 1: cox.zph(transform = "rank") ranks every follow-up time (censored included) and
    centres over the deaths."""
    if key == "zph_veteran":
        d = pd.read_csv(shared_path("clinical", "veteran.csv")).rename(columns={"status": "event"})
        cov = ["trt", "karno", "diagtime", "age"]
    else:
        d, cov = LUNG, ["age", "sex", "ph.ecog"]
    ref = GAPS[key]
    fit = SV.fit_cox(d, "time", "event", cov)
    assert np.allclose(fit.coef, ref["coef"], atol=TOL)
    z = SV.cox_zph(fit, transform=transform).table
    assert np.allclose(z.chisq, ref[transform]["chisq"], atol=TOL)
    assert np.allclose(z.p, ref[transform]["p"], atol=TOL)


def _predict_case(key):
    if key == "predict_lung":
        return LUNG, ["age", "sex", "ph.ecog"], "event"
    return pd.read_csv(REF_DIR / "colon_death.csv"), ["age", "nodes", "extent", "obstruct"], "status"


@pytest.mark.parametrize("key", ["predict_lung", "predict_colon"])
def test_cox_predicted_survival_and_baseline_hazard_match_survfit(key):
    """Items 3 and 8: Efron baseline (survfit.coxph default ctype = 2, basehaz(centered = FALSE))
    for an Efron fit, Breslow (ctype = 1) on request; predictions as survfit(fit, newdata)."""
    from gastrorad.models.pipeline import _cox_baseline
    d, cov, ev = _predict_case(key)
    ref = GAPS[key]
    fit = SV.fit_cox(d, "time", ev, cov)
    assert np.allclose(fit.coef, ref["coef"], atol=TOL)
    times = ref["times"]
    assert np.allclose(list(_cox_baseline(fit, times).values()), ref["s0_efron"], atol=TOL)  # nomogram, evaluation
    assert np.allclose(fit.baseline_survival(times), ref["s0_efron"], atol=TOL)
    assert np.allclose(fit.baseline_survival(times, ties="breslow"), ref["s0_breslow"], atol=TOL)
    assert np.allclose(fit.baseline_hazard(times).hazard, ref["h0_efron"], atol=TOL)
    assert np.allclose(fit.baseline_hazard(times, ties="breslow").hazard, ref["h0_breslow"], atol=TOL)
    bh = fit.baseline_hazard()
    assert np.allclose(bh.time, ref["basehaz_time"]) and np.allclose(bh.hazard, ref["basehaz"], atol=TOL)
    pred = fit.predict_survival(d.iloc[:6], times)
    assert pred.shape == (6, len(times))
    assert np.allclose(pred.to_numpy(), ref["predicted"], atol=TOL)


def test_cox_survival_matches_rms_survival_at_cph_coefficients():
    """rms::cph's Survival(t, lp) = S0(t)^exp(lp + center) with the Efron baseline, at cph's
    own coefficients (cph stops earlier than coxph)."""
    from gastrorad.stats.survival.cox import cox_baseline_hazard
    d, cov, _ = _predict_case("predict_colon")
    ref = GAPS["rms_survival_colon"]
    lp = d[cov].to_numpy(float) @ np.array(ref["coef"])
    for t, key in ((365, "s365"), (1095, "s1095")):
        h0 = cox_baseline_hazard(d.time, d.status, lp, [t])[0]
        assert np.allclose(np.exp(-h0 * np.exp(np.array(ref["lp"]) + ref["center"])), ref[key], atol=TOL)


@pytest.mark.parametrize("key", ["timeroc_lung", "timeroc_veteran", "timeroc_hard", "timeroc_colon"])
def test_time_dependent_auc_se_and_ci_match_timeroc(key):
    """Items 2 and 8: timeROC 0.4.1 (weighting = "marginal", iid = TRUE): cases T < t, the
    censoring KM with deaths first at tied times, the i.i.d.-representation SE and
    confint's pointwise CI (AUC +/- z SE; timeROC prints it in percent to 2 decimals)."""
    ref = GAPS[key]
    res = SV.time_dependent_auc(ref["time"], ref["event"], ref["marker"], ref["times"])
    assert res.cases.tolist() == ref["cases"] and res.controls.tolist() == ref["controls"]
    assert np.allclose(res.auc, ref["auc"], atol=TOL)
    assert np.allclose(res.se, ref["se"], atol=TOL)
    z = 1.959963984540054
    assert np.allclose(res.lower, np.array(ref["auc"]) - z * np.array(ref["se"]), atol=TOL)
    assert np.allclose(res.upper, np.array(ref["auc"]) + z * np.array(ref["se"]), atol=TOL)
    ci = np.array(ref["ci_percent"])
    assert np.abs(100 * res[["lower", "upper"]].to_numpy() - ci).max() <= 0.005 + 1e-9


@pytest.mark.parametrize("key,conf,group", [("km_times_lung_sex", "log", "sex"),
                                             ("km_times_veteran_celltype_loglog", "log-log", "celltype"),
                                             ("km_times_colon", "log", None)])
def test_km_at_times_and_by_group_match_summary_survfit(key, conf, group):
    """Item 8: KM estimates with CIs at chosen times, by group (summary(survfit(Surv ~ g),
    times = ...)); std_err is the SE of S, as summary.survfit reports it."""
    ref = GAPS[key]
    times = sorted(set(ref["time"]))
    if key == "km_times_lung_sex":
        d = _lung()
        t, e, g = d.time, d.event, d.sex.astype(int).astype(str)
    elif key == "km_times_veteran_celltype_loglog":
        d = pd.read_csv(shared_path("clinical", "veteran.csv"))
        t, e, g = d.time, d.status, d.celltype
    else:
        d = pd.read_csv(REF_DIR / "colon_death.csv")
        t, e, g = d.time, d.status, np.repeat("all", len(d))
    curves, tab = SV.kaplan_meier_by_group(t, e, g, times, conf_type=conf)
    assert tab.group.astype(str).tolist() == [str(s) for s in ref["strata"]]
    assert tab.time.tolist() == ref["time"] and tab.n_risk.tolist() == ref["n_risk"]
    assert tab.n_event.tolist() == ref["n_event"]
    for col in ("surv", "std_err", "lower", "upper"):
        assert np.allclose(tab[col], _nan(ref[col]), atol=TOL, equal_nan=True), col
    summ = SV.kaplan_meier_by_group(t, e, g, conf_type=conf)[1]
    for mine, theirs in (("median", "median"), ("median_lower", "median_lower"), ("median_upper", "median_upper")):
        assert np.allclose(summ[mine], _nan(ref[theirs]), equal_nan=True, atol=TOL)


@pytest.mark.parametrize("key", ["cox_breslow_lung", "cox_breslow_colon"])
def test_fit_cox_breslow_ties_match_coxph(key):
    """Item 8: fit_cox(ties="breslow") as coxph(ties = "breslow"); loglik (null and fitted), AIC."""
    d, cov, ev = _predict_case("predict_lung" if key.endswith("lung") else "predict_colon")
    ref = GAPS[key]
    fit = SV.fit_cox(d, "time", ev, cov, ties="breslow")
    assert np.allclose(fit.coef, ref["coef"], atol=TOL) and np.allclose(fit.table.se, ref["se"], atol=TOL)
    assert [fit.loglik_null, fit.loglik] == pytest.approx(ref["loglik"], abs=TOL)
    assert fit.aic == pytest.approx(ref["aic"], abs=TOL)
    assert np.allclose(fit.table.hr_upper, ref["hr_upper"], atol=TOL)


def test_cox_fit_with_a_single_event_stops_where_coxph_stops():
    """Item 6: 5 women of lung's institution 26, one death: the likelihood is flat; the fit
    follows coxph's iterations, so the HR's CI agrees to 1e-6 (it was 1e-5 off); cox.zph has
    no answer (R: 'system is exactly singular') and says so."""
    ref = GAPS["cox_one_event"]
    d = pd.DataFrame(ref["data"])
    fit = SV.fit_cox(d, "time", "event", ["age"])
    row = fit.table.iloc[0]
    assert row.coef == pytest.approx(ref["coef"], abs=TOL) and row.se == pytest.approx(ref["se"], abs=TOL)
    assert row.hr_lower == pytest.approx(ref["hr_lower"], abs=TOL)
    assert row.hr_upper == pytest.approx(ref["hr_upper"], abs=TOL)
    assert [fit.loglik_null, fit.loglik] == pytest.approx(ref["loglik"], abs=TOL)
    assert "singular" in ref["zph_error"]
    with pytest.raises(ValueError, match="at least two events"):
        SV.cox_zph(fit)


@pytest.mark.parametrize("key,cov", [("cox_separation", "ph.ecog"), ("cox_separation_sex", "sex")])
def test_cox_separation_warns_as_coxph(key, cov):
    """Item 7: monotone likelihood (the one death has the highest ECOG; no deaths among the
    women of institution 32): coxph runs out of iterations and warns; so does fit_cox, at the
    same diverging coefficient."""
    ref = GAPS[key]
    d = pd.DataFrame(ref.get("data", GAPS["cox_one_event"]["data"]))
    assert any("did not converge" in w for w in np.atleast_1d(ref["warnings"]))
    with pytest.warns(RuntimeWarning, match="did not converge.*infinite"):
        fit = SV.fit_cox(d, "time", "event", [cov])
    assert not fit.converged
    assert fit.coef[0] == pytest.approx(ref["coef"], rel=1e-6)
    assert fit.table.hr_lower[0] == 0 and np.isinf(fit.table.hr_upper[0])


@pytest.mark.parametrize("key", ["lung_age", "colon_age", "veteran_age", "veteran_diagtime"])
def test_cox_fit_on_a_flat_likelihood_reaches_r_precision(key):
    """Item 6: follow-up administratively censored at the first death time: the likelihood is
    nearly flat and coxph stops after 3-5 Newton steps. fit_cox takes the same steps, so it
    stops at the same point to 1e-9 (lifelines stopped elsewhere: 1.3e-7 on lung's HR upper
    limit)."""
    ref = GAPS["cox_one_event_admin"][key]
    name = key.split("_")[0]
    if name == "lung":
        d = _lung()
    elif name == "colon":
        d = pd.read_csv(REF_DIR / "colon_death.csv").rename(columns={"status": "event"})
    else:
        d = pd.read_csv(shared_path("clinical", "veteran.csv")).rename(columns={"status": "event"})
    d = d.assign(event=np.where(d.time > ref["cut"], 0, d.event))
    fit = SV.fit_cox(d, "time", "event", list(np.atleast_1d(ref["covariates"])))
    assert fit.converged
    assert np.allclose(fit.coef, ref["coef"], atol=1e-9, rtol=0)
    assert np.allclose(fit.table.se, ref["se"], atol=1e-9, rtol=0)
    assert np.allclose(fit.table.hr_upper, ref["hr_upper"], atol=1e-9, rtol=0)
    assert [fit.loglik_null, fit.loglik] == pytest.approx(ref["loglik"], abs=1e-9)
