"""`gastrorad init`: images + masks + a CSV/XLSX table -> manifest, clinical table, study.yaml; and
XLSX wherever the data contract takes a table (read_table)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from typer.testing import CliRunner

from gastrorad.cli import app
from gastrorad.config.study import DataConfig, load_study
from gastrorad.data.tables import load_clinical, read_table, sheet_row
from gastrorad.data.validate import validate_study
from gastrorad.errors import InputError
from gastrorad.studyinit import init_study
from gastrorad.studyinit.detect import patch_side

runner = CliRunner()
SPACING = (0.8, 0.8, 2.5)
SIZE = (64, 64, 10)  # x, y, z
FOV_MM = float(int(SIZE[0] * SPACING[0]))  # the images' in-plane field of view, whole mm


def _write(arr: np.ndarray, path: Path) -> None:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(SPACING)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))


def _ball(radius_mm: float, centre=(32, 32, 5)) -> np.ndarray:
    z, y, x = np.mgrid[:SIZE[2], :SIZE[1], :SIZE[0]]
    d = np.sqrt(((x - centre[0]) * SPACING[0]) ** 2 + ((y - centre[1]) * SPACING[1]) ** 2
                + ((z - centre[2]) * SPACING[2]) ** 2)
    return d <= radius_mm


def make_case(root: Path, pid: str, *, kind: str = "soft", radii=(10.0,), lesions=None, image=True, mask=True,
              rng=None) -> None:
    """A CT-like volume in HU (air outside a body; soft tissue, or lung around the lesions) and its masks."""
    rng = rng or np.random.default_rng(0)
    z, y, x = np.mgrid[:SIZE[2], :SIZE[1], :SIZE[0]]
    body = ((x - 32) / 30) ** 2 + ((y - 32) / 28) ** 2 <= 1
    arr = np.where(body, -850.0 if kind == "lung" else 40.0, -1000.0)
    if kind == "binary":
        arr = body.astype(np.float64)
    centres = [(32, 32, 5), (20, 44, 5), (44, 20, 5)]
    masks = []
    for k, r in enumerate(radii):
        roi = _ball(r, centres[k])
        if kind != "binary":
            arr[roi] = 60.0
        masks.append(roi)
    arr = arr + (0 if kind == "binary" else rng.normal(0, 5, arr.shape))
    if image:
        _write(arr.astype(np.float32), root / "images" / f"{pid}.nii.gz")
    if mask:
        names = lesions or [None]
        for roi, name in zip(masks, names):
            name = f"{pid}_{name}_mask.nii.gz" if name else f"{pid}_mask.nii.gz"
            _write(roi.astype(np.uint8), root / "masks" / name)


def extent_p90(radii) -> float:
    """The 90th percentile of the masks' largest in-plane extents (as the voxels draw them)."""
    ext = []
    for r in radii:
        m = _ball(r)
        ys, xs = np.nonzero(m.any(axis=0))
        ext.append(max((xs.max() - xs.min() + 1) * SPACING[0], (ys.max() - ys.min() + 1) * SPACING[1]))
    return float(np.percentile(ext, 90))


@pytest.fixture
def soft_study(tmp_path) -> Path:
    """12 patients at two hospitals (8 + 4), soft-tissue tumours, a CSV table; plus unmatched items."""
    rng = np.random.default_rng(1)
    radii = {f"P{i:03d}": 6.0 + i for i in range(1, 13)}
    for pid, r in radii.items():
        make_case(tmp_path, pid, radii=(r,), rng=rng)
    make_case(tmp_path, "P013", mask=False)          # image without a mask
    make_case(tmp_path, "P099", image=False)         # mask without an image
    make_case(tmp_path, "P014")                      # no clinical row
    ids = list(radii) + ["P013", "P050"]             # P050: a clinical row without images
    n = len(ids)
    pd.DataFrame({
        "Patient ID": ids,
        "hospital": ["H1"] * 8 + ["H2"] * 4 + ["H1", "H2"],
        "age": rng.integers(40, 80, n),
        "sex": ["M", "F"] * (n // 2),
        "stage": [1, 2, 3, 2, 1, 3, 2, 1, 3, 2, 1, 2, 1, 3],
        "cea": rng.gamma(2.0, 3.0, n).round(2),
        "mrn": [f"X{1000 + i}" for i in range(n)],
        "response": [0, 1] * (n // 2),
    }).to_csv(tmp_path / "clinical.csv", index=False)
    return tmp_path


def _init(root: Path, *args: str):
    return runner.invoke(app, ["init", str(root / "study"), "--images", str(root / "images"), "--masks",
                               str(root / "masks"), *args], terminal_width=200)


def test_init_soft_tissue_csv_binary_two_centres(soft_study):
    res = _init(soft_study, "--clinical", str(soft_study / "clinical.csv"))
    assert res.exit_code == 0, res.output
    out = soft_study / "study"
    man = pd.read_csv(out / "manifest.csv")
    assert list(man.columns[:5]) == ["patient_id", "image", "mask", "phase", "lesion_id"]
    assert sorted(man["patient_id"]) == [f"P{i:03d}" for i in range(1, 13)]
    assert man["image"].iloc[0] == "../images/P001.nii.gz" and man["mask"].iloc[0] == "../masks/P001_mask.nii.gz"
    assert set(man["phase"]) == {"venous"} and set(man["lesion_id"]) == {"primary"}
    clin = pd.read_csv(out / "clinical.csv", dtype={"patient_id": str})
    assert list(clin.columns[:2]) == ["patient_id", "center"] and len(clin) == 12
    assert set(clin["center"]) == {"H1", "H2"}

    study = yaml.safe_load((out / "study.yaml").read_text())
    assert study["outcome"] == {"kind": "binary", "label": "response"}
    assert study["cohorts"] == {"split": {"centers": ["H1"], "ratio": {"training": 7, "internal": 3},
                                          "stratify": True}, "external": {"H2": "external"}}
    assert study["clinical"]["variables"] == ["age", "sex", "stage", "cea"]        # mrn: an identifier
    assert study["clinical"]["categorical"] == ["sex", "stage"]
    assert study["preprocess"]["phases"] == ["venous"]
    assert study["preprocess"]["window"] == {"low": -350, "high": 450}              # soft tissue: the recipe's
    p90 = extent_p90([6.0 + i for i in range(1, 13)])
    side = study["preprocess"]["patch"]["side_mm"]
    assert 1.5 * p90 <= patch_side(p90) <= 2 * p90
    assert side == min(patch_side(p90), FOV_MM)  # never wider than the images (51 mm here): that would be padding
    assert study["profiles"]["fast"]["preprocess"]["patch"]["side_mm"] == side
    text = (out / "study.yaml").read_text()
    assert "# binary, label response: a 0/1 column named 'response'" in text
    assert "soft tissue" in text and "90th-percentile" in text

    unmatched = pd.read_csv(out / "unmatched.csv")
    got = {(r.what, r.id) for r in unmatched.itertuples()}
    assert got == {("image without mask", "P013"), ("mask without image", "P099"),
                   ("patient without a clinical row", "P014"), ("clinical row without images", "P013"),
                   ("clinical row without images", "P050")}
    for word in ("image without mask", "P099", "P050", "not matched", "OK: validate found 0 error(s)"):
        assert word in res.output
    cfg = load_study(out / "study.yaml")
    assert validate_study(cfg).ok


def test_init_refuses_to_overwrite_unless_forced(soft_study):
    assert _init(soft_study, "--clinical", str(soft_study / "clinical.csv")).exit_code == 0
    before = (soft_study / "study" / "study.yaml").read_text()
    again = _init(soft_study, "--clinical", str(soft_study / "clinical.csv"), "--outcome", "stage")
    assert again.exit_code == 1 and "already exists" in again.output and "--force" in again.output
    assert (soft_study / "study" / "study.yaml").read_text() == before
    forced = _init(soft_study, "--clinical", str(soft_study / "clinical.csv"), "--force", "--outcome", "response")
    assert forced.exit_code == 0, forced.output


def test_init_lung_xlsx_survival_lesion_level(tmp_path):
    rng = np.random.default_rng(2)
    lesions = {"L01": 2, "L02": 1, "L03": 2, "L04": 1, "L05": 3, "L06": 1, "L07": 2, "L08": 1, "L09": 1, "L10": 2}
    for pid, k in lesions.items():
        names = [f"n{j + 1}" for j in range(k)]
        make_case(tmp_path, pid, kind="lung", radii=[3.0 + 0.5 * j for j in range(k)], lesions=names, rng=rng)
    ids = list(lesions)
    with pd.ExcelWriter(tmp_path / "clinical.xlsx") as xl:
        pd.DataFrame({"note": ["exported from the registry"]}).to_excel(xl, sheet_name="Notes", index=False)
        pd.DataFrame({"id": ids, "age": rng.integers(40, 80, len(ids)), "smoker": ["yes", "no"] * 5,
                      "os_time": rng.uniform(2, 60, len(ids)).round(1), "os_event": [1, 0, 1, 1, 0, 1, 1, 0, 1, 1]}
                     ).to_excel(xl, sheet_name="Clinical", index=False)
    res = _init(tmp_path, "--clinical", str(tmp_path / "clinical.xlsx"), "--sheet", "Clinical",
                "--recipe", "s5_gnen_survival")
    out = tmp_path / "study"
    study = yaml.safe_load((out / "study.yaml").read_text())
    assert study["outcome"]["kind"] == "survival"
    assert (study["outcome"]["time"], study["outcome"]["event"]) == ("os_time", "os_event")
    assert study["preprocess"]["window"] == {"level": -600, "width": 1500}          # lesions in air
    assert "lung window" in (out / "study.yaml").read_text()
    assert study["data"]["patient_column"] == "patient"
    assert study["cohorts"]["split"]["centers"] == ["A"]                              # no centre column
    assert study["clinical"]["variables"] == ["age", "smoker"]
    man = pd.read_csv(out / "manifest.csv")
    assert len(man) == sum(lesions.values())
    l05 = man[man["patient_id"].str.startswith("L05_")]
    assert set(l05["patient_id"]) == {"L05_n1", "L05_n2", "L05_n3"} and set(l05["lesion_id"]) == {"n1", "n2", "n3"}
    assert list(man.loc[man["patient_id"] == "L02_n1", "image"]) == ["../images/L02.nii.gz"]
    clin = pd.read_csv(out / "clinical.csv")
    assert list(clin.columns[:3]) == ["patient_id", "patient", "center"]
    assert len(clin) == sum(lesions.values())
    l05 = clin[clin["patient"] == "L05"]
    assert len(l05) == 3 and l05["age"].nunique() == 1                                 # the row copied per lesion
    side = study["preprocess"]["patch"]["side_mm"]
    p90 = extent_p90([3.0 + 0.5 * j for k in lesions.values() for j in range(k)])
    assert 1.5 * p90 <= side <= 2 * p90 and side < FOV_MM
    if "patient_column" in DataConfig.model_fields:  # the lesion-level key of the study file
        assert res.exit_code == 0, res.output
        cfg = load_study(out / "study.yaml")
        report = validate_study(cfg)
        assert report.ok, report.problems
        cohort = report.clinical.groupby("patient")["cohort"].nunique()
        assert (cohort == 1).all()                                                     # a patient's lesions together


def test_init_cohort_column_phases_and_images_not_in_hu(tmp_path):
    for i in range(1, 7):
        for phase in ("arterial", "venous"):
            make_case(tmp_path / phase, f"C{i}", kind="binary", radii=(8.0,))
    # phase folders: images/<phase>/C1.nii.gz -> move into one images/ and masks/ tree
    for what in ("images", "masks"):
        for phase in ("arterial", "venous"):
            src = tmp_path / phase / what
            dst = tmp_path / what / phase
            dst.parent.mkdir(parents=True, exist_ok=True)
            src.rename(dst)
    pd.DataFrame({"patient_id": [f"C{i}" for i in range(1, 7)], "split": ["train"] * 4 + ["test"] * 2,
                  "label": [0, 1, 0, 1, 1, 0]}).to_csv(tmp_path / "clin.csv", index=False)
    res = init_study(tmp_path / "study", tmp_path / "images", tmp_path / "masks", tmp_path / "clin.csv",
                     validate=False)
    study = yaml.safe_load((tmp_path / "study" / "study.yaml").read_text())
    assert study["cohorts"] == {"column": "cohort"}
    clin = pd.read_csv(tmp_path / "study" / "clinical.csv")
    assert list(clin["cohort"]) == ["training"] * 4 + ["test"] * 2
    assert study["preprocess"]["phases"] == ["arterial", "venous"]
    man = pd.read_csv(tmp_path / "study" / "manifest.csv")
    assert len(man) == 12 and set(man["phase"]) == {"arterial", "venous"}
    assert study["clinical"]["variables"] == []
    assert any("do not look like CT in HU" in w and "binary 0/1" in w for w in res.warnings)
    assert "do not look like CT in HU" in (tmp_path / "study" / "study.yaml").read_text()


def write_dicom_series(folder: Path, arr: np.ndarray, uid: str) -> None:
    """CT slices (int16 HU, no file suffix: found by their DICM magic), LPS axial, 0.8 x 0.8 x 2.5 mm."""
    folder.mkdir(parents=True)
    for k in range(arr.shape[0]):
        sl = sitk.GetImageFromArray(arr[k].astype(np.int16))
        sl.SetSpacing(SPACING[:2])
        for tag, v in {"0008|0060": "CT", "0020|000e": uid, "0020|000d": uid + ".0", "0020|0013": str(k + 1),
                       "0020|0032": f"0\\0\\{k * SPACING[2]}", "0020|0037": "1\\0\\0\\0\\1\\0",
                       "0028|0030": f"{SPACING[0]}\\{SPACING[1]}", "0008|0018": f"{uid}.{k + 1}"}.items():
            sl.SetMetaData(tag, v)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetImageIO("GDCMImageIO")
        writer.SetFileName(str(folder / f"IM{k:04d}"))
        writer.Execute(sl)


def test_init_dicom_series_folders(tmp_path):
    for i in range(1, 5):
        arr = np.where(_ball(30.0), 40.0, -1000.0)
        arr[_ball(6.0 + i)] = 70.0
        write_dicom_series(tmp_path / "images" / f"D{i}" / "ct", arr, f"1.2.826.0.1.3680043.2.1125.7.{i}")
        _write(_ball(6.0 + i).astype(np.uint8), tmp_path / "masks" / f"D{i}_seg.nii.gz")
    pd.DataFrame({"patient_id": [f"D{i}" for i in range(1, 5)], "label": [0, 1, 0, 1]}).to_csv(tmp_path / "c.csv",
                                                                                                 index=False)
    res = init_study(tmp_path / "s", tmp_path / "images", tmp_path / "masks", tmp_path / "c.csv")
    man = pd.read_csv(tmp_path / "s" / "manifest.csv")
    assert list(man["image"]) == [f"../images/D{i}/ct" for i in range(1, 5)]
    assert res.pairs == 4 and res.unmatched.empty
    assert res.ok, res.problems


def test_init_pattern_option_and_its_errors(tmp_path):
    for pid in ("case-01", "case-02"):
        make_case(tmp_path, pid)
    (tmp_path / "masks" / "case-01_mask.nii.gz").rename(tmp_path / "masks" / "seg_01.nii.gz")
    (tmp_path / "masks" / "case-02_mask.nii.gz").rename(tmp_path / "masks" / "seg_02.nii.gz")
    pd.DataFrame({"patient_id": ["01", "02"], "label": [0, 1]}).to_csv(tmp_path / "c.csv", index=False)
    res = init_study(tmp_path / "s", tmp_path / "images", tmp_path / "masks", tmp_path / "c.csv",
                     pattern=r"(?P<id>\d+)$", validate=False)
    assert res.pairs == 2 and res.unmatched.empty
    with pytest.raises(InputError, match="no named group 'id'"):
        init_study(tmp_path / "t", tmp_path / "images", tmp_path / "masks", tmp_path / "c.csv", pattern=r"\d+")


def test_read_table_xlsx_sheets_rows_and_errors(tmp_path):
    path = tmp_path / "t.xlsx"
    with pd.ExcelWriter(path) as xl:
        pd.DataFrame({"a": [1]}).to_excel(xl, sheet_name="First", index=False)
        pd.DataFrame({"patient_id": [1001, 1002, None, 1004], "center": ["A", "A", None, "B"],
                      "age": [50, 61.5, None, 70], "when": pd.to_datetime(["2021-03-04"] * 4)}
                     ).to_excel(xl, sheet_name="Patients", index=False)
    first = read_table(path)
    assert list(first.columns) == ["a"]
    for df in (read_table(path, sheet="Patients"), read_table(f"{path}#Patients")):
        assert list(df["patient_id"].iloc[[0, 1, 3]]) == ["1001", "1002", "1004"]     # IDs as text
        assert df["age"].dtype.kind == "f" and df["when"].iloc[0] == "2021-03-04"
        # the blank spreadsheet row 4 is kept, so rows in problems are the spreadsheet's rows
        assert sheet_row(df.index[df["patient_id"] == "1004"][0]) == 5
    _, problems = load_clinical(f"{path}#Patients")  # as a study file's data.clinical: the sheet's own rows
    assert (4, "patient_id", "empty patient_id") in [(p.row, p.column, p.reason) for p in problems]
    with pytest.raises(InputError) as exc:
        read_table(path, sheet="Nope")
    assert "no sheet 'Nope'" in str(exc.value) and "First, Patients" in str(exc.value)
    pd.DataFrame({"patient_id": ["P1"]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError, match="not a workbook"):
        read_table(tmp_path / "t.csv", sheet="Patients")


def test_read_table_xlsx_header_must_be_on_row_one(tmp_path):
    path = tmp_path / "t.xlsx"
    pd.DataFrame({"patient_id": ["P1"], "label": [1]}).to_excel(path, index=False, startrow=2)
    with pytest.raises(InputError, match="header .* must be on row 1; the first filled row is 3"):
        read_table(path)


def test_images_that_are_not_hu_get_their_own_value_range_as_window():
    """AdrenalMNIST3D's 0/255 shape volumes: a HU window (-350..450) would map them to 0.44/0.76."""
    from gastrorad.studyinit.detect import RoiStats, choose_window
    stats = RoiStats(extents=[40.0, 45.0], air_share=[0.0, 0.0], surround_median=[0.0, 0.0],
                     not_hu=["no negative values (0..255)"] * 2, value_range=[(0.0, 255.0), (0.0, 255.0)],
                     image_extent_mm=[64.0, 64.0], measured=2, total=2)
    window, choice = choose_window(stats, {"low": -350, "high": 450})
    assert window == {"low": 0.0, "high": 255.0} and "own value range" in choice.why
