"""The study file: defaults, strictness (unknown keys), window forms, patch mode union."""

from __future__ import annotations

import pytest

from conftest import write_yaml
from gastrorad.config import load_study
from gastrorad.config.study import Stack25DPatch, WindowConfig
from gastrorad.errors import InputError

MINIMAL = {"data": {"manifest": "m.csv", "clinical": "c.csv"}, "outcome": {"kind": "binary"},
           "cohorts": {"split": {"centers": ["A"]}}}


def test_minimal_study_gets_documented_defaults(tmp_path):
    cfg = load_study(write_yaml(tmp_path / "s.yaml", MINIMAL))
    assert cfg.seed == 42
    assert cfg.outcome.label == "label"
    assert cfg.cohorts.split.ratio == {"training": 7.0, "internal": 3.0}
    assert cfg.preprocess.window.bounds == (-350.0, 450.0)
    assert isinstance(cfg.preprocess.patch, Stack25DPatch) and cfg.preprocess.patch.context_slices == 5
    assert cfg.manifest_path == tmp_path / "m.csv"  # relative to the study file
    assert cfg.cache_dir == tmp_path / "runs" / "study" / "cache" / "patches"


def test_unknown_keys_are_errors_with_their_path(tmp_path):
    data = {**MINIMAL, "preprocess": {"windw": {"low": 0, "high": 1}, "patch": {"mode": "bbox", "context": 2}}}
    with pytest.raises(InputError) as exc:
        load_study(write_yaml(tmp_path / "s.yaml", data))
    cols = {p.column for p in exc.value.problems}
    assert "preprocess.windw" in cols
    assert any(c.startswith("preprocess.patch.bbox.context") for c in cols)
    assert all(p.file.endswith("s.yaml") for p in exc.value.problems)


def test_window_level_width_and_errors():
    assert WindowConfig(level=50, width=350).bounds == (-125.0, 225.0)
    with pytest.raises(ValueError):
        WindowConfig(low=0, high=1, level=0, width=1)
    with pytest.raises(ValueError):
        WindowConfig(low=10, high=0)


def test_bad_cohort_rules_and_missing_sections(tmp_path):
    with pytest.raises(InputError, match="training"):
        load_study(write_yaml(tmp_path / "a.yaml", {**MINIMAL, "cohorts": {"split": {"centers": ["A"], "ratio": {"x": 1}}}}))
    with pytest.raises(InputError, match="either 'column' or a 'split'"):
        load_study(write_yaml(tmp_path / "b.yaml", {**MINIMAL, "cohorts": {}}))
    with pytest.raises(InputError) as exc:
        load_study(write_yaml(tmp_path / "c.yaml", {"outcome": {"kind": "binary"}}))
    assert {"data", "cohorts"} <= {p.column for p in exc.value.problems}
    with pytest.raises(InputError, match="does not exist"):
        load_study(tmp_path / "none.yaml")
    (tmp_path / "d.yaml").write_text("data: [unclosed")
    with pytest.raises(InputError, match="not valid YAML"):
        load_study(tmp_path / "d.yaml")


def test_every_synthetic_study_file_loads():
    from gastrorad.config.study import StudyConfig
    from gastrorad.synth.study_file import synthetic_study_config
    for kind in ("s1", "s2", "s3", "s4", "s5"):
        cfg = StudyConfig.model_validate(synthetic_study_config(kind))
        assert cfg.name == f"synthetic_{kind}"
