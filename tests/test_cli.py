"""The command line: every stage listed, unbuilt stages refuse plainly, exit codes."""

from __future__ import annotations

import json
import os

import pandas as pd
from typer.testing import CliRunner

from gastrorad.cli import app

STAGES = ["synth", "validate", "preprocess", "train", "score", "extract-features", "signature", "fit", "evaluate",
          "explain", "report", "run", "predict"]
runner = CliRunner()


def test_help_lists_every_stage():
    out = runner.invoke(app, ["--help"], terminal_width=200).output
    for stage in STAGES:
        assert f" {stage} " in out, stage


def test_version_option():
    from gastrorad import __version__
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"gastrorad {__version__}"


def test_a_missing_study_file_or_recipe_is_a_clear_error(tmp_path):
    res = runner.invoke(app, ["evaluate", str(tmp_path / "nope.yaml")], terminal_width=200)
    assert res.exit_code == 1
    assert "no recipe of that name" in res.output and "s1_nact_resistance" in res.output


def test_validate_exit_codes(s1_copy):
    ok = runner.invoke(app, ["validate", str(s1_copy / "study.yaml"), "--json", str(s1_copy / "v.json")])
    assert ok.exit_code == 0, ok.output
    assert (s1_copy / "v.json").exists()
    c = pd.read_csv(s1_copy / "clinical.csv")
    c.loc[0, "label"] = 7
    c.to_csv(s1_copy / "clinical.csv", index=False)
    bad = runner.invoke(app, ["validate", str(s1_copy / "study.yaml")], terminal_width=200)
    assert bad.exit_code == 1
    assert "non-binary label" in bad.output


def test_synth_and_preprocess_commands(tmp_path):
    res = runner.invoke(app, ["synth", str(tmp_path / "s"), "--kind", "s4", "--n", "4", "--workers", "1"])
    assert res.exit_code == 0, res.output
    pre = runner.invoke(app, ["preprocess", str(tmp_path / "s" / "study.yaml"), "--workers", "1"])
    assert pre.exit_code == 0, pre.output
    idx = pd.read_csv(tmp_path / "s" / "run" / "patches.csv")
    assert len(idx) == 4


def test_synth_refuses_bad_arguments_without_a_traceback(tmp_path):
    for args, why in ((["--kind", "s9"], "unknown synthetic kind 's9'"),
                      (["--kind", "s3", "--roi", "volume"], "draws bounding boxes"),
                      (["--kind", "s1", "--roi", "sphere"], "choose slice or volume"),
                      (["--kind", "s1", "--n", "2"], "at least 4 patients")):
        res = runner.invoke(app, ["synth", str(tmp_path / "s"), *args], terminal_width=200)
        assert res.exit_code == 2 and why in res.output and "Traceback" not in res.output, res.output
        assert not (tmp_path / "s").exists()  # nothing written


def test_a_study_file_that_is_not_utf8_names_the_file_and_line(tmp_path, monkeypatch):
    """Issue 12, item 9: a Latin-1 study.yaml printed a UnicodeDecodeError traceback."""
    from gastrorad import cli
    monkeypatch.setattr(cli.err, "width", 400)  # one line per problem: rich wraps table cells at 80 columns
    (tmp_path / "s.yaml").write_bytes("name: x\n# r\u00e9sum\u00e9 of the study\n".encode("latin-1"))
    res = runner.invoke(app, ["validate", str(tmp_path / "s.yaml")], terminal_width=200)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "not UTF-8" in res.output and "s.yaml" in res.output and "line 2" in res.output


def test_bad_study_file_is_reported(tmp_path):
    (tmp_path / "s.yaml").write_text("name: x\nwindw: 3\n")
    res = runner.invoke(app, ["validate", str(tmp_path / "s.yaml")], terminal_width=200)
    assert res.exit_code == 1 and "windw" in res.output


def test_demo_runs_every_built_stage(tmp_path, monkeypatch):
    from gastrorad import cli
    monkeypatch.setattr(cli.err, "width", 400)  # one line per problem: rich wraps table cells at 80 columns
    res = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--n", "40"], terminal_width=200)
    assert res.exit_code == 0, (res.output, res.exception)
    assert "Headline" in res.output and "oracle" in res.output
    run = tmp_path / "demo" / "run"
    # the fast profile's frozen-feature path: deep features of a fixed random-init CNN, the handcrafted reference
    for f in ("patches.csv", "features_venous.csv", "radiomics_venous.csv", "models/feature_extractor.pt",
              "signatures.csv", "predictions.csv", "metrics/metrics.json", "metrics/signature_comparison.csv",
              "report.html", "bundle/bundle.json", "config.resolved.yaml"):
        assert (run / f).exists(), f
    # the paper's single-slice ROIs: 2D handcrafted features, said in the log, radiomics.json and the report
    assert "radiomics: 2D shape and in-plane texture (every ROI lies on one axial slice)" in res.output
    hcr = json.loads((run / "radiomics.json").read_text())
    assert hcr["settings"]["force2d"] is True and hcr["why"] == "every ROI lies on one axial slice"
    assert "2D shape and in-plane texture: every ROI lies on one axial slice" in (run / "report.html").read_text()
    # issue 12 item 11: `gastrorad predict BUNDLE patients.csv` with the default (relative) --out, the first
    # thing a new user types, failed with "predictions/inputs/manifest.csv: table does not exist"
    cohort = tmp_path / "demo" / "s1_cohort"
    work = tmp_path / "work"
    work.mkdir()
    cwd = os.getcwd()
    try:
        os.chdir(work)
        res = runner.invoke(app, ["predict", str(run / "bundle"), str(cohort / "manifest.csv"), "--clinical",
                                  str(cohort / "clinical.csv"), "--no-gradcam"], terminal_width=200)
    finally:
        os.chdir(cwd)
    fit = json.loads((run / "bundle" / "fit.json").read_text())
    if fit["models"]:
        assert res.exit_code == 0, (res.output, res.exception)
        assert (work / "predictions" / "predictions.csv").exists()
    else:  # 40 patients: training may select nothing (LASSO keeps no deep feature, no clinical term passes)
        assert res.exit_code == 1 and "holds no fitted model" in res.output, (res.output, res.exception)
        assert not (work / "predictions" / "predictions.csv").exists()


def test_output_to_a_file_or_pipe_is_wide_enough_for_the_headline_table():
    """Piped to a log file, rich's default 80 columns cut the headline table's CIs to '(0.851-0.…'."""
    import subprocess
    import sys
    probe = "from gastrorad.cli import console, err; print(console.width, err.width)"
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["160", "160"]
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env={**env, "COLUMNS": "100"},
                         check=True)
    assert out.stdout.split() == ["100", "100"]
