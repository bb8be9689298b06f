"""Cohort assignment: seeded stratified split, external map, prospective rule, column mode."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gastrorad.config.study import StudyConfig
from gastrorad.data.cohorts import assign_cohorts, split_counts


def _cfg(**cohorts) -> StudyConfig:
    return StudyConfig.model_validate({"data": {"manifest": "m.csv", "clinical": "c.csv"},
                                       "outcome": {"kind": "binary"}, "cohorts": cohorts, "seed": 7})


def _clinical(n_a=100, n_b=30, n_c=20, seed=0):
    rng = np.random.default_rng(seed)
    n = n_a + n_b + n_c
    return pd.DataFrame({"patient_id": [f"P{i}" for i in range(n)],
                         "center": ["A"] * n_a + ["B"] * n_b + ["C"] * n_c,
                         "label": (rng.uniform(size=n) < 0.3).astype(int),
                         "enrolled": pd.date_range("2018-01-01", periods=n, freq="7D").strftime("%Y-%m-%d")})


def test_split_counts_largest_remainder():
    assert split_counts(10, {"training": 7, "internal": 3}) == {"training": 7, "internal": 3}
    assert split_counts(11, {"training": 7, "internal": 3}) == {"training": 8, "internal": 3}
    assert sum(split_counts(347, {"a": 1, "b": 1, "c": 1}).values()) == 347


def test_stratified_seeded_split_with_external_map():
    df = _clinical()
    cfg = _cfg(split={"centers": ["A"], "ratio": {"training": 7, "internal": 3}}, external={"B": "external1"})
    cohorts, problems = assign_cohorts(df, cfg)
    assert problems == []
    a = df["center"] == "A"
    counts = cohorts[a.to_numpy()].value_counts()
    assert counts["training"] == 70 and counts["internal"] == 30
    assert set(cohorts[(df["center"] == "B").to_numpy()]) == {"external1"}
    assert set(cohorts[(df["center"] == "C").to_numpy()]) == {"external"}
    # Stratified: the positive rate of training and internal differ by at most one patient's worth.
    y = df.set_index("patient_id")["label"]
    rate = {c: y[cohorts.index[cohorts == c]].mean() for c in ("training", "internal")}
    assert abs(rate["training"] - rate["internal"]) < 0.05
    again, _ = assign_cohorts(df, cfg)
    assert again.equals(cohorts)  # deterministic for a seed
    other, _ = assign_cohorts(df, cfg.model_copy(update={"seed": 8}))
    assert not other.equals(cohorts)
    # issue 12 item 15: the order of the ratio's keys in the study file does not change the split
    swapped = _cfg(split={"centers": ["A"], "ratio": {"internal": 3, "training": 7}}, external={"B": "external1"})
    assert assign_cohorts(df, swapped)[0].equals(cohorts)
    from gastrorad.data.cohorts import canonical_order
    assert canonical_order(["internal", "external2", "training", "test"]) == ["training", "internal", "test",
                                                                              "external2"]


def test_prospective_rule_comes_first():
    df = _clinical()
    cfg = _cfg(split={"centers": ["A"]}, prospective={"column": "enrolled", "after": "2019-06-01"})
    cohorts, problems = assign_cohorts(df, cfg)
    assert problems == []
    late = pd.to_datetime(df["enrolled"]) >= "2019-06-01"
    assert (cohorts[late.to_numpy()] == "prospective").all()
    assert not (cohorts[~late.to_numpy()] == "prospective").any()


def test_cohort_column_mode_checks_names():
    df = _clinical(10, 0, 0).assign(cohort=["training"] * 7 + ["internal", "validation", None])
    cohorts, problems = assign_cohorts(df, _cfg(column="cohort"))
    rows = sorted(p.row for p in problems)
    assert rows == [10, 11]  # spreadsheet rows of 'validation' and the empty cell
    assert all(p.column == "cohort" for p in problems)


def test_unknown_centres_and_columns_are_reported():
    df = _clinical(10, 5, 0)
    _, problems = assign_cohorts(df, _cfg(split={"centers": ["A", "Z"]}, external={"Q": "external2"}))
    reasons = " ".join(p.reason for p in problems)
    assert "'Z'" in reasons and "'Q'" in reasons
    _, problems = assign_cohorts(df, _cfg(split={"centers": ["A"]}, prospective={"column": "nope", "equals": 1}))
    assert any(p.column == "nope" for p in problems)
