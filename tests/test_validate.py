"""`validate`: every bad input of SPEC section 2 is reported with file, row, column, reason,
all in one report; a clean study passes and is summarised."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from gastrorad.config import load_study
from gastrorad.data import validate_study
from gastrorad.data.validate import parse_bbox


def _problems(study):
    report = validate_study(load_study(study / "study.yaml"), workers=2)
    return report, report.problems


def _find(problems, *, column=None, row=None, text=""):
    hits = [p for p in problems if (column is None or p.column == column) and (row is None or p.row == row)
            and text in p.reason]
    assert hits, f"no problem with column={column} row={row} '{text}' in:\n" + "\n".join(map(str, problems))
    return hits[0]


def test_clean_synthetic_study_passes_with_summary(s1_study):
    report = validate_study(load_study(s1_study / "study.yaml"))
    assert report.ok, report.problems
    s = report.summary
    assert s["patients"].loc["total", "total"] == 8
    assert set(s["outcome"].index) <= {"training", "internal", "external1", "external2"}
    assert s["outcome"]["patients"].sum() == 8
    assert int(s["images"]["images"].sum()) == 8
    assert list(s["missing"].index)[:2] == ["age", "bmi"]


def test_every_bad_input_is_collected_in_one_report(s1_copy):
    m = pd.read_csv(s1_copy / "manifest.csv", dtype=str, keep_default_na=False)
    c = pd.read_csv(s1_copy / "clinical.csv", dtype={"patient_id": str})
    # 1. missing image file (spreadsheet row 2)
    m.loc[0, "image"] = "images/missing.nii.gz"
    # 2. mask off the image grid (row 3)
    ref = sitk.ReadImage(str(s1_copy / m.loc[1, "mask"]))
    ref.SetOrigin(tuple(np.add(ref.GetOrigin(), (0, 0, 7.5))))
    sitk.WriteImage(ref, str(s1_copy / "masks" / "shifted.nii.gz"))
    m.loc[1, "mask"] = "masks/shifted.nii.gz"
    # 3. empty mask (row 4)
    empty = sitk.ReadImage(str(s1_copy / m.loc[2, "mask"])) * 0
    sitk.WriteImage(empty, str(s1_copy / "masks" / "empty.nii.gz"))
    m.loc[2, "mask"] = "masks/empty.nii.gz"
    # 4. unreadable image (row 5)
    (s1_copy / "images" / "broken.nii.gz").write_bytes(b"\x1f\x8b garbage")
    m.loc[3, "image"] = "images/broken.nii.gz"
    # 5. bbox outside the image, no mask (row 6)
    m.loc[4, "mask"] = ""
    m.loc[4, "bbox"] = "0 0 0 9999 10 2"
    # 6. unknown manifest column; 7. images of a patient not in the clinical table (row 10)
    m["notes"] = ""
    m.loc[len(m)] = {**m.loc[5].to_dict(), "patient_id": "P9999"}
    # 8. non-binary label (row 3); 9. duplicated patient (new last row); 10. patient without images
    c.loc[1, "label"] = 2
    c.loc[len(c)] = c.loc[0]
    c.loc[len(c)] = {**c.loc[0].to_dict(), "patient_id": "P0100"}
    m.to_csv(s1_copy / "manifest.csv", index=False)
    c.to_csv(s1_copy / "clinical.csv", index=False)

    report, P = _problems(s1_copy)
    assert not report.ok
    mf, cf = str(s1_copy / "manifest.csv"), str(s1_copy / "clinical.csv")
    assert _find(P, column="image", row=2, text="does not exist").file == mf
    assert "origin" in _find(P, column="mask", row=3, text="geometry mismatch").reason
    _find(P, column="mask", row=4, text="empty mask")
    _find(P, column="image", row=5, text="not a readable NIfTI file")
    _find(P, column="bbox", row=6, text="outside the image")
    _find(P, column="notes", text="unknown column")
    _find(P, column="patient_id", row=10, text="no row in the clinical table")
    assert _find(P, column="label", row=3, text="non-binary").file == cf
    _find(P, column="patient_id", row=len(c), text="duplicated patient")
    _find(P, column="patient_id", row=len(c) + 1, text="has no image")


def test_survival_outcome_checks(s1_copy):
    c = pd.read_csv(s1_copy / "clinical.csv", dtype={"patient_id": str})
    c["time"] = np.linspace(1, 30, len(c))
    c["event"] = 1
    c.loc[2, "time"] = -3.0
    c.loc[3, "event"] = 2
    c.loc[4, "time"] = np.nan
    c.to_csv(s1_copy / "clinical.csv", index=False)
    cfg = yaml.safe_load((s1_copy / "study.yaml").read_text())
    cfg["outcome"] = {"kind": "survival"}
    (s1_copy / "study.yaml").write_text(yaml.safe_dump(cfg))
    _, P = _problems(s1_copy)
    _find(P, column="time", row=4, text="negative survival time")
    _find(P, column="event", row=5, text="not 0 (censored) or 1")
    _find(P, column="time", row=6, text="missing survival time")


def test_patient_in_two_cohorts_and_unknown_variable(s1_copy):
    m = pd.read_csv(s1_copy / "manifest.csv", dtype=str, keep_default_na=False)
    m["cohort"] = "training"
    m.loc[len(m)] = {**m.loc[0].to_dict(), "lesion_id": "node_1", "cohort": "external2"}
    m.to_csv(s1_copy / "manifest.csv", index=False)
    cfg = yaml.safe_load((s1_copy / "study.yaml").read_text())
    cfg["clinical"]["variables"].append("ki67")
    (s1_copy / "study.yaml").write_text(yaml.safe_dump(cfg))
    _, P = _problems(s1_copy)
    _find(P, column="cohort", text="in two cohorts")
    _find(P, column="ki67", text="unknown column")


def test_duplicated_rows_missing_phase_and_no_roi(s1_copy):
    m = pd.read_csv(s1_copy / "manifest.csv", dtype=str, keep_default_na=False)
    m.loc[len(m)] = m.loc[0]
    m.loc[1, "mask"] = ""
    m.loc[2, "phase"] = "arterial"
    m.to_csv(s1_copy / "manifest.csv", index=False)
    _, P = _problems(s1_copy)
    _find(P, column="patient_id", row=len(m) + 1, text="duplicated image row")
    _find(P, column="mask", row=3, text="no ROI")
    _find(P, column="phase", text="no 'venous' image")


def test_parse_bbox():
    assert parse_bbox("1 2 3 4 5 6") == (1, 2, 3, 4, 5, 6)
    assert parse_bbox("1,2,3,4,5,3") == (1, 2, 3, 4, 5, 3)
    for bad in ("1 2 3", "a b c d e f", "5 5 5 1 1 1"):
        with pytest.raises(ValueError):
            parse_bbox(bad)


def test_study_ids_that_would_write_outside_the_output_folder_are_refused(s1_copy):
    """Issue 12, item 1: a patient_id such as '../../escaped_P0001' became a Grad-CAM file name
    two levels above the run's folder. Validate refuses it, naming the file, row and column."""
    m = pd.read_csv(s1_copy / "manifest.csv", dtype=str, keep_default_na=False)
    c = pd.read_csv(s1_copy / "clinical.csv", dtype=str, keep_default_na=False)
    old = m.loc[0, "patient_id"]
    m.loc[m.patient_id == old, "patient_id"] = "../../escaped_P0001"
    c.loc[c.patient_id == old, "patient_id"] = "../../escaped_P0001"
    m.loc[1, "lesion_id"] = "a\\b"
    m.to_csv(s1_copy / "manifest.csv", index=False)
    c.to_csv(s1_copy / "clinical.csv", index=False)
    report, problems = _problems(s1_copy)
    assert not report.ok
    for table in ("manifest.csv", "clinical.csv"):
        assert any(p.column == "patient_id" and p.file.endswith(table) and "path separator" in p.reason
                   and p.row is not None for p in problems), table
    _find(problems, column="lesion_id", row=3, text="path separator")


def test_writes_are_kept_inside_the_output_folder(tmp_path):
    from gastrorad.io.safe_paths import id_problem, inside
    assert inside(tmp_path, "explain", "training", "P0001.png") == (tmp_path / "explain/training/P0001.png").resolve()
    with pytest.raises(ValueError, match="outside the output folder"):
        inside(tmp_path / "explain", "training", "../../../escaped.png")
    assert id_problem("P-0001_a.b") is None and id_problem("..") and id_problem(".hidden")
    assert id_problem("C:evil") and id_problem("a\x00b") and id_problem("x" * 129)


def test_atomic_writes_follow_the_umask(tmp_path):
    """Issue 12, item 9: reports written atomically were 0600, unreadable by a colleague."""
    import os
    import stat
    from gastrorad.io.atomic import _umask, atomic_write_text
    atomic_write_text(tmp_path / "report.html", "<html></html>")
    mode = stat.S_IMODE(os.stat(tmp_path / "report.html").st_mode)
    assert mode == 0o666 & ~_umask()
    assert mode & 0o044 or _umask() & 0o044  # group/other can read unless the umask forbids it


def test_text_in_a_continuous_clinical_column_is_refused_with_row_and_column(s1_copy):
    """Issue 12, item 6: '12,5' in a continuous column passed validate, then the run died with
    OverflowError; in predict's clinical file it was taken silently."""
    c = pd.read_csv(s1_copy / "clinical.csv", dtype=str, keep_default_na=False)
    c.loc[1, "cea"] = "12,5"
    c.loc[3, "age"] = "unknown"
    c.to_csv(s1_copy / "clinical.csv", index=False)
    _, P = _problems(s1_copy)
    _find(P, column="cea", row=3, text="'12,5' is not a number")
    _find(P, column="age", row=5, text="not a number")
    from gastrorad.errors import InputError
    from gastrorad.models.encoding import ClinicalEncoder
    train = pd.DataFrame({"cea": [1.0, 2.0, 3.0]})
    enc = ClinicalEncoder(["cea"]).fit(train)
    with pytest.raises(InputError) as exc:
        enc.transform(pd.DataFrame({"cea": ["1.5", "abc", ""]}).replace("", np.nan), source="patients.csv")
    p = exc.value.problems[0]
    assert (p.file, p.row, p.column) == ("patients.csv", 3, "cea") and "'abc' is not a number" in p.reason


def test_a_training_cohort_with_one_class_is_refused_with_counts(s1_copy):
    """Issue 12, item 7: a single-class training outcome passed validate; the run then died with
    'ValueError: y has a single class'."""
    from gastrorad.data.cohorts import assign_cohorts
    cfg = load_study(s1_copy / "study.yaml")
    c = pd.read_csv(s1_copy / "clinical.csv", dtype={"patient_id": str})
    cohorts, _ = assign_cohorts(c, cfg)
    train_ids = set(cohorts[cohorts == "training"].index)
    c.loc[c.patient_id.isin(train_ids), "label"] = 0
    c.loc[~c.patient_id.isin(train_ids), "label"] = 1  # both classes overall: only the training cohort is wrong
    c.to_csv(s1_copy / "clinical.csv", index=False)
    report, P = _problems(s1_copy)
    hit = _find(P, column="label", text="training cohort has 0 positive")
    assert f"and {len(train_ids)} negative" in hit.reason


def _edit_study(study, **sections):
    raw = yaml.safe_load((study / "study.yaml").read_text())
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    (study / "study.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def test_roi_sizes_that_do_not_suit_the_patch_are_named_with_a_proposed_side(s1_copy):
    """A fixed patch side narrower than the ROIs cuts them off; one far wider makes them a speck:
    validate says which, with the ROIs' extents and a side that suits them."""
    _edit_study(s1_copy, preprocess={"patch": {"mode": "slice2d", "side_mm": 5.0, "size": [32, 32]}})
    _, problems = _problems(s1_copy)
    p = _find(problems, column="mask", text="wider than the 5 mm patch")
    assert p.severity == "warning" and "propose side_mm:" in p.reason
    proposed = float(p.reason.rsplit("propose side_mm:", 1)[1])
    _edit_study(s1_copy, preprocess={"patch": {"mode": "slice2d", "side_mm": 2000.0, "size": [32, 32]}})
    _, problems = _problems(s1_copy)
    p = _find(problems, column="mask", text="the network mostly sees its surroundings")
    assert float(p.reason.rsplit("propose side_mm:", 1)[1]) == proposed
    _edit_study(s1_copy, preprocess={"patch": {"mode": "slice2d", "side_mm": proposed, "size": [32, 32]}})
    _, problems = _problems(s1_copy)
    assert not [p for p in problems if "side_mm" in p.reason]


def test_too_few_events_per_variable_is_a_warning(s1_copy):
    report, problems = _problems(s1_copy)  # 8 patients, 9 candidate clinical variables
    p = _find(problems, text="per variable")
    assert p.severity == "warning" and report.ok


def test_lesion_rows_without_a_patient_column_are_pointed_out(s1_copy):
    c = pd.read_csv(s1_copy / "clinical.csv", dtype={"patient_id": str})
    c["patient_number"] = [f"P{i // 2}" for i in range(len(c))]  # two rows (lesions) per patient
    c.to_csv(s1_copy / "clinical.csv", index=False)
    _, problems = _problems(s1_copy)
    p = _find(problems, column="patient_number", text="data.patient_column: patient_number")
    assert p.severity == "warning"
    m = pd.read_csv(s1_copy / "manifest.csv", dtype=str, keep_default_na=False)
    extra = m.iloc[[0]].assign(lesion_id="second")  # the same patient's second lesion on the same scan
    pd.concat([m, extra]).to_csv(s1_copy / "manifest.csv", index=False)
    _, problems = _problems(s1_copy)
    _find(problems, column="lesion_id", text="several lesions")
