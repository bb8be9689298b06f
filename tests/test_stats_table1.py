"""Table 1 against R's default tests (tests/r_reference/table1.R -> table1.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import shared_path
from gastrorad.stats.table1 import _p_categorical, _p_continuous, table_one, table_one_html

REF = json.loads((Path(__file__).parent / "r_reference" / "table1.json").read_text())


def _asah():
    return pd.read_csv(shared_path("clinical", "aSAH.csv"))


def test_p_values_match_r():
    d = _asah()
    good, poor = (d[d.outcome == o] for o in ("Good", "Poor"))
    assert _p_continuous([good.age.to_numpy(float), poor.age.to_numpy(float)], "median")[0] == pytest.approx(REF["age_wilcox"], abs=1e-6)
    assert _p_continuous([good.s100b.to_numpy(float), poor.s100b.to_numpy(float)], "median")[0] == pytest.approx(REF["s100b_wilcox"], abs=1e-6)
    assert _p_continuous([good.age.to_numpy(float), poor.age.to_numpy(float)], "mean")[0] == pytest.approx(REF["age_t"], abs=1e-6)
    tab = pd.crosstab(d.gender, d.outcome).to_numpy()
    assert _p_categorical(tab) == (pytest.approx(REF["gender_chisq"], abs=1e-6), "chi-square")
    p, test = _p_categorical(pd.crosstab(d.wfns, d.outcome).to_numpy())
    assert test == "Fisher exact" and p == pytest.approx(REF["wfns_fisher"], rel=1e-6)
    by_wfns = [g.age.to_numpy(float) for _, g in d.groupby("wfns")]
    assert _p_continuous(by_wfns, "median")[0] == pytest.approx(REF["age_kruskal"], abs=1e-6)
    assert _p_continuous(by_wfns, "mean")[0] == pytest.approx(REF["age_anova"], abs=1e-6)
    colon = pd.read_csv(shared_path("clinical", "colon.csv"))
    assert _p_categorical(pd.crosstab(colon.rx, colon.sex).to_numpy())[0] == pytest.approx(REF["rx_chisq"], abs=1e-6)
    exact = _p_continuous([np.array([1.1, 2.3, 3.2, 4.8]), np.array([2.9, 5.1, 6.4, 7.7, 8.2])], "median")
    assert exact[0] == pytest.approx(REF["small_wilcox_exact"], abs=1e-9)


def test_table_layout_and_html():
    d = _asah()
    t = table_one(d, "outcome", ["age", "gender", "wfns", "s100b"], categorical=["gender", "wfns"])
    assert list(t.columns) == ["variable", "level", "Good (n=72)", "Poor (n=41)", "Overall", "p", "test"]
    age = t[t.variable == "age"].iloc[0]
    assert age["Overall"] == f"{np.median(d.age):.1f} [{np.percentile(d.age, 25):.1f}, {np.percentile(d.age, 75):.1f}]"
    assert age["p"] == pytest.approx(REF["age_wilcox"], abs=1e-6)
    female = t[(t.level == "Female")].iloc[0]
    n_f_good = int(((d.gender == "Female") & (d.outcome == "Good")).sum())
    assert female["Good (n=72)"].startswith(f"{n_f_good} (")
    html = table_one_html(t)
    assert html.startswith('<table class="table1">') and "&lt;0.001" in html


def test_by_outcome_within_each_cohort_and_across_cohorts():
    from gastrorad.stats.table1 import table_one_by_cohort
    d = _asah()
    d["cohort"] = np.where(np.arange(len(d)) % 3 == 0, "internal", "training")
    t = table_one_by_cohort(d, "outcome", "cohort", ["age", "gender"], categorical=["gender"])
    assert list(dict.fromkeys(t.columns.get_level_values(0))) == ["training", "internal"]
    n_train_good = int(((d.cohort == "training") & (d.outcome == "Good")).sum())
    assert ("training", f"Good (n={n_train_good})") in t.columns
    across = table_one(d, "cohort", ["age", "gender"], categorical=["gender"])
    assert "internal (n=38)" in across.columns
