"""Issue 28: faults of `gastrorad predict` and `gastrorad validate`, one test each.

- a damaged bundle (bundle.json cut short, fit.json or study.yaml unparsable) is one line naming
  the file, exit 1, no traceback;
- a failed predict (a refused pickle, an unseen level, text in a numeric column, a missing image)
  leaves ``--out`` as it found it, an earlier prediction included (``cache/`` may stay);
- predictions.csv cannot carry a spreadsheet formula (CSV injection), on the image and the
  clinical-only path;
- validate reports a categorical level that the training cohort never saw.

One tiny S1 study (the frozen-feature deep path of test_zoo: tiny random CNNs, 48 px) and one
clinical-only study are run once for the module.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from gastrorad.bundle import predict_patients
from gastrorad.cli import app
from gastrorad.config.study import load_study
from gastrorad.errors import InputError
from test_zoo import TINY

CLINICAL = ["age", "sex", "ct"]
#: the patients each predict scores: few, so a failing predict costs seconds
FEW = 3


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Rich wraps long table cells at 80 columns; a wide console keeps each message on one line."""
    from gastrorad import cli
    monkeypatch.setattr(cli.console, "width", 400)
    monkeypatch.setattr(cli.err, "width", 400)


def _study(folder: Path, data: Path, extra: dict, manifest: bool = True) -> Path:
    raw = {**TINY, "name": folder.name, "outcome": {"kind": "binary", "label": "label"},
           "cohorts": {"split": {"ratio": {"training": 7, "internal": 3}}},
           "clinical": {"variables": CLINICAL, "categorical": ["sex", "ct"],
                        "selection": {"screen_p": None, "method": "none"}}, **extra}
    raw["data"] = {**({"manifest": str(data / "manifest.csv")} if manifest else {}),
                   "clinical": str(data / "clinical.csv")}
    raw["output"] = str(folder / "run")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "study.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder / "study.yaml"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """A synthetic S1 cohort of 40 patients (small matrices)."""
    from gastrorad.synth import synthesize
    return synthesize("s1", tmp_path_factory.mktemp("cohort"), n=40, seed=5, workers=2, matrix_scale=0.5).folder


@pytest.fixture(scope="module")
def s1(cohort, tmp_path_factory):
    """The cohort run through to its bundles: the image study (frozen deep features, every clinical
    candidate kept) and the clinical-only one."""
    from gastrorad.runner import run_study
    root, data = tmp_path_factory.mktemp("faults"), cohort
    cfg = load_study(_study(root / "image", data, {}))
    run_study(cfg, log=lambda m: None)
    clin = load_study(_study(root / "clinical", data, {}, manifest=False))
    run_study(clin, log=lambda m: None)
    return {"data": data, "bundle": cfg.output_dir / "bundle", "clinical_bundle": clin.output_dir / "bundle",
            "root": root}


def _patients(data: Path, folder: Path, pids=None, **edits) -> Path:
    """The first FEW patients (or ``pids``) as one patients file: manifest columns with absolute
    paths and the clinical columns; ``edits`` set a column's value of the first patient."""
    man = pd.read_csv(data / "manifest.csv", dtype={"patient_id": str})
    for col in ("image", "mask"):
        man[col] = [str((data / v).resolve()) for v in man[col]]
    clin = pd.read_csv(data / "clinical.csv", dtype={"patient_id": str})[["patient_id", *CLINICAL]]
    table = man.merge(clin, on="patient_id")
    table = table[table.patient_id.isin(pids or list(clin.patient_id[:FEW]))].reset_index(drop=True)
    for col, value in edits.items():
        table[col] = table[col].astype(object)
        table.loc[0, col] = value
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "patients.csv", index=False)
    return folder / "patients.csv"


@pytest.fixture(scope="module")
def earlier(s1):
    """A successful prediction (FEW patients), to copy as the earlier contents of an ``--out``."""
    folder = s1["root"] / "earlier"
    predict_patients(s1["bundle"], _patients(s1["data"], folder), folder / "out", gradcam=False)
    (folder / "out" / "notes.txt").write_text("the clinician's own notes\n")
    return folder / "out"


def _snapshot(folder: Path) -> dict:
    """Every file under ``folder`` but ``cache/`` with its SHA-256 (folders as None)."""
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            for p in sorted(folder.rglob("*")) if p.relative_to(folder).parts[0] != "cache"}


def _copy_bundle(bundle: Path, dst: Path) -> Path:
    shutil.copytree(bundle, dst)
    return dst


def _rehash(bundle: Path, rel: str) -> None:
    """Record ``rel``'s current SHA-256 in bundle.json: damage the hash check cannot see."""
    from gastrorad.io.hashing import file_hash
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["files"][rel] = file_hash(bundle / rel)
    (bundle / "bundle.json").write_text(json.dumps(manifest, indent=2))


# -- item 1: a damaged bundle is one line naming the file --------------------------------------

@pytest.mark.parametrize("damage", ["bundle.json", "fit.json", "signatures.json", "study.yaml"])
def test_a_damaged_bundle_file_is_one_line_naming_it(s1, tmp_path, damage):
    bundle = _copy_bundle(s1["bundle"], tmp_path / "bundle")
    path = bundle / damage
    text = path.read_text()
    if damage == "study.yaml":
        path.write_text(text + "\nfusion: {models: [unclosed\n")
    else:
        path.write_text(text[: len(text) // 2])  # a copy cut short: an unterminated string or object
    if damage != "bundle.json":
        _rehash(bundle, damage)
    patients = _patients(s1["data"], tmp_path)
    res = CliRunner().invoke(app, ["predict", str(bundle), str(patients), "--out", str(tmp_path / "out")])
    out = res.output
    assert res.exit_code == 1, out
    assert "Traceback" not in out and (res.exception is None or isinstance(res.exception, SystemExit)), out
    assert "JSONDecodeError" not in out and "Unterminated" not in out, out
    lines = [line for line in out.splitlines() if "the bundle is damaged" in line]
    assert len(lines) == 1 and str(path) in lines[0], out
    what = "YAML" if damage == "study.yaml" else "JSON"
    assert f"{damage} is not valid {what} (line " in lines[0] and "export the bundle again" in lines[0], out
    assert not (tmp_path / "out").exists()


def test_read_bundle_json_refuses_what_is_not_a_json_object(tmp_path):
    from gastrorad.bundle.export import read_bundle_json
    path = tmp_path / "card.json"
    for text, words in [('{"title": "S1", "cutoffs": {"clin', "is not valid JSON (line 1, column 29)"),
                        ("", "is not valid JSON (line 1, column 1)"), ("[1, 2]", "holds a list, not a JSON object")]:
        path.write_text(text)
        with pytest.raises(InputError, match=re.escape(f"the bundle is damaged: card.json {words}; export")):
            read_bundle_json(path)
    path.write_bytes(b"\xff\xfe{\x00")
    with pytest.raises(InputError, match="not UTF-8 text"):
        read_bundle_json(path)
    with pytest.raises(InputError, match="bundle file is missing"):
        read_bundle_json(tmp_path / "fit.json")
    path.write_text('{"title": "S1"}')
    assert read_bundle_json(path) == {"title": "S1"}


# -- item 2: a failed predict leaves --out as it found it --------------------------------------

def _pickled_weights(bundle: Path) -> None:
    """The feature extractor replaced by a file that needs unpickling (hash list updated to match)."""
    import torch

    from test_longitudinal import _Payload
    rel = json.loads((bundle / "bundle.json").read_text())["weights"][0]
    torch.save({"gastrorad_checkpoint": 2, "state_dict": {}, "extra": _Payload()}, bundle / rel)
    _rehash(bundle, rel)


FAILURES = {
    "refused pickle": ({}, "not unpickled"),
    "unseen level": ({"ct": "T9"}, "'T9' was not seen in the training cohort"),
    "not a number": ({"age": "sixty"}, "'sixty' is not a number"),
    "missing image": ({"image": "/nonexistent/P_missing.nii.gz"}, "P_missing"),
}


@pytest.mark.parametrize("kind", list(FAILURES))
def test_a_failed_predict_leaves_out_as_it_found_it(s1, earlier, tmp_path, kind):
    edits, words = FAILURES[kind]
    bundle = s1["bundle"]
    if kind == "refused pickle":
        bundle = _copy_bundle(bundle, tmp_path / "bundle")
        _pickled_weights(bundle)
    patients = _patients(s1["data"], tmp_path, **edits)
    # an --out holding an earlier prediction (and the user's own file): all of it survives
    out = tmp_path / "out"
    shutil.copytree(earlier, out)
    before = _snapshot(out)
    assert {"predictions.csv", "patches.csv", "inputs/manifest.csv", "notes.txt"} <= set(before)
    with pytest.raises(InputError, match=words):
        predict_patients(bundle, patients, out, gradcam=False)
    assert _snapshot(out) == before
    # an --out that did not exist: nothing is left but the content-keyed cache
    fresh = tmp_path / "new" / "out"
    with pytest.raises(InputError, match=words):
        predict_patients(bundle, patients, fresh, gradcam=False)
    assert not fresh.exists() or {p.name for p in fresh.iterdir()} == {"cache"}
    if not fresh.exists():
        assert not (tmp_path / "new").exists()


def test_a_successful_predict_replaces_the_earlier_outputs_and_says_so(s1, earlier, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(earlier, out)
    (out / "features_arterial.csv").write_text("patient_id\n")  # an output the new prediction does not write
    lines = []
    pids = list(pd.read_csv(s1["data"] / "clinical.csv", dtype={"patient_id": str}).patient_id[FEW:FEW + 2])
    res = predict_patients(s1["bundle"], _patients(s1["data"], tmp_path, pids=pids), out, gradcam=False,
                           log=lines.append)
    assert set(res.predictions.patient_id) == set(pids)
    assert set(pd.read_csv(out / "predictions.csv", dtype={"patient_id": str}).patient_id) == set(pids)
    assert not (out / "features_arterial.csv").exists() and (out / "notes.txt").exists()
    assert "features_arterial.csv" in res.removed and "predictions.csv" in res.removed
    assert any("earlier prediction" in line and "predictions.csv" in line for line in lines), lines
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_a_predict_killed_midway_is_rolled_back_by_the_next_one(tmp_path):
    """Killed between moving the earlier outputs aside and finishing: the next predict into the
    folder first puts the earlier outputs back (and drops the killed one's partial outputs)."""
    from gastrorad.bundle.predict import EARLIER, keep_as_found
    out = tmp_path / "out"
    (out / EARLIER / "inputs").mkdir(parents=True)
    (out / EARLIER / "predictions.csv").write_text("patient_id,score\nP1,0.5\n")
    (out / EARLIER / "inputs" / "manifest.csv").write_text("patient_id\nP1\n")
    (out / "patches.csv").write_text("partial\n")  # the killed prediction's
    (out / "notes.txt").write_text("mine\n")
    before_kill = {"predictions.csv": "patient_id,score\nP1,0.5\n", "inputs/manifest.csv": "patient_id\nP1\n",
                   "notes.txt": "mine\n"}
    with pytest.raises(RuntimeError):
        with keep_as_found(out):
            (out / "predictions.csv").write_text("half\n")
            raise RuntimeError("fails again")
    assert {p.relative_to(out).as_posix(): p.read_text() for p in out.rglob("*") if p.is_file()} == before_kill


# -- item 3: CSV injection -----------------------------------------------------------------------

FORMULA_ID = "@SUM(1)"


def _renamed(data: Path, folder: Path, manifest: bool = True) -> Path:
    """The first patient renamed to a formula-like ID in the patients (and clinical) file."""
    first = pd.read_csv(data / "clinical.csv", dtype={"patient_id": str}).patient_id[0]
    if manifest:
        path = _patients(data, folder)
        table = pd.read_csv(path, dtype={"patient_id": str})
        table.loc[table.patient_id == first, "patient_id"] = FORMULA_ID
    else:
        path = folder / "clinical.csv"
        table = pd.read_csv(data / "clinical.csv", dtype={"patient_id": str}).head(FEW)
        table.loc[0, "patient_id"] = FORMULA_ID
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("which", ["bundle", "clinical_bundle"])
def test_predictions_csv_carries_no_spreadsheet_formula(s1, tmp_path, which):
    patients = _renamed(s1["data"], tmp_path, manifest=which == "bundle")
    res = predict_patients(s1[which], patients, tmp_path / "out", gradcam=False)
    assert FORMULA_ID in set(res.predictions.patient_id)  # the Python result keeps the ID as given
    rows = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    mine = [r for r in rows[1:] if "SUM(1)" in r]
    assert mine and all(r.startswith("'" + FORMULA_ID) for r in mine), rows
    assert not [r for r in rows if r.startswith(("=", "+", "-", "@"))], rows
    back = pd.read_csv(tmp_path / "out" / "predictions.csv", dtype={"patient_id": str})
    # the other patients' IDs and every number read back unchanged
    assert set(back.patient_id) - {"'" + FORMULA_ID} == set(res.predictions.patient_id) - {FORMULA_ID}
    np.testing.assert_allclose(back.score.to_numpy(float), res.predictions.score.to_numpy(float), rtol=0, atol=1e-12)


def test_neutralise_frame_quotes_formula_text_and_keeps_numbers():
    from gastrorad.io.csv_safe import download_csv, neutralise_frame
    df = pd.DataFrame({"patient_id": ["=cmd|' -C calc'!A0", "+1+1", "-x", "@SUM(1)", "\tA", "P001", "a=b"],
                       "lp": [-0.5, 1.0, -2.25, 0.0, 3.0, -1e-3, 2.0], "n": [-1, 2, 3, 4, 5, 6, 7],
                       "=HYPERLINK(\"x\")": ["-", "", None, "ok", "x", "y", "z"]})
    out = neutralise_frame(df)
    assert list(out.patient_id) == ["'=cmd|' -C calc'!A0", "'+1+1", "'-x", "'@SUM(1)", "'\tA", "P001", "a=b"]
    assert list(out.columns) == ["patient_id", "lp", "n", "'=HYPERLINK(\"x\")"]
    assert out.lp.dtype == float and list(out.lp) == list(df.lp) and list(out.n) == list(df.n)
    assert list(out.iloc[:, 3])[:3] == ["'-", "", None]
    assert list(df.patient_id)[0].startswith("=")  # the caller's frame is not changed
    lines = download_csv(df).splitlines()
    assert lines[0].startswith("patient_id,lp,n,") and lines[1] == "'=cmd|' -C calc'!A0,-0.5,-1,'-"
    assert lines[3] == "'-x,-2.25,3,"  # text quoted, numbers written as numbers, a missing value empty


# -- item 4: validate reports a level the training cohort never saw -----------------------------

def _clinical_only(tmp_path: Path, clinical: pd.DataFrame, extra: dict) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    clinical.to_csv(data / "clinical.csv", index=False)
    return _study(tmp_path / "study", data, extra, manifest=False)


@pytest.fixture(scope="module")
def clinical_table(cohort):
    return pd.read_csv(cohort / "clinical.csv", dtype={"patient_id": str})


def _unseen(clin: pd.DataFrame, cohort) -> list[tuple[int, str]]:
    """(spreadsheet row, column) of the first row of each categorical level no training row has."""
    train = np.asarray(cohort) == "training"
    first: dict = {}
    for col in ("sex", "ct"):
        for i, v in enumerate(clin[col]):
            if not train[i] and pd.notna(v) and v not in set(clin[col][train]):
                first.setdefault((col, v), (i + 2, col))
    return list(first.values())


def test_validate_reports_a_level_training_never_saw(clinical_table, tmp_path):
    from gastrorad.data import validate_study
    clin = clinical_table.copy()
    clin["split"] = np.where(np.arange(len(clin)) % 3 == 0, "internal", "training")
    clin.loc[3, "split"] = "external1"
    clin.loc[3, "ct"] = "T5"           # a validation patient with a level training never saw
    clin.loc[12, "ct"] = "T5"          # and another: one problem, at the first row
    clin.loc[6, "ct"] = np.nan         # missing: imputed, not a level
    clin.loc[9, "sex"] = "unknown"     # a second unseen level, in another column
    study = _clinical_only(tmp_path, clin, {"cohorts": {"column": "split"}})
    report = validate_study(load_study(study))
    unseen = [p for p in report.errors if "never saw" in p.reason]
    source = str(tmp_path / "data" / "clinical.csv")
    assert {(5, "ct"), (11, "sex")} <= set(_unseen(clin, clin.split)) and (8, "ct") not in _unseen(clin, clin.split)
    assert [(p.file, p.row, p.column) for p in unseen] == [(source, *u) for u in _unseen(clin, clin.split)]
    t5 = next(p for p in unseen if p.row == 5)
    assert "'T5' (external1, internal cohorts; 1 more row(s) have it)" in t5.reason, t5
    assert "never saw it" in t5.reason and "clinical.groups (e.g. ct: {" in t5.reason, t5
    # the CLI: exit 1, the problem in its table
    res = CliRunner().invoke(app, ["validate", str(study)])
    assert res.exit_code == 1 and "'T5'" in res.output and "never saw" in res.output, res.output

    # a level grouped with levels training saw is fine
    groups = {"cohorts": {"column": "split"},
              "clinical": {"variables": CLINICAL, "categorical": ["sex", "ct"],
                           "groups": {"ct": {"T2+3": ["T2", "T3"], "T4": ["T4a", "T4b", "T5"]},
                                      "sex": {"female": ["female", "unknown"]}},
                           "selection": {"screen_p": None, "method": "none"}}}
    report = validate_study(load_study(_clinical_only(tmp_path, clin, groups)))
    assert not [p for p in report.problems if "never saw" in p.reason], report.problems


def test_validate_finds_unseen_levels_with_a_split_rule(clinical_table, tmp_path):
    """Cohorts by a seeded split: validate splits as run does, so the training rows are known."""
    from gastrorad.data import validate_study
    from gastrorad.data.cohorts import assign_cohorts
    clin = clinical_table.copy()
    study = _clinical_only(tmp_path, clin, {})
    cfg = load_study(study)
    cohort = assign_cohorts(clin, cfg)[0].to_numpy()
    i = int(np.flatnonzero(cohort != "training")[0])
    clin.loc[i, "ct"] = "T5"
    j = int(np.flatnonzero(cohort == "training")[0])
    clin.loc[j, "sex"] = "X"  # seen in training (it is a training row): fine
    clin.to_csv(tmp_path / "data" / "clinical.csv", index=False)
    report = validate_study(load_study(study))
    unseen = [p for p in report.errors if "never saw" in p.reason]
    assert (i + 2, "ct") in _unseen(clin, cohort) and (j + 2, "sex") not in _unseen(clin, cohort)
    assert [(p.row, p.column) for p in unseen] == _unseen(clin, cohort), report.problems
