"""Issue 12: the cases a careless or hostile user tried, one test each.

Each CLI case asserts the exit code, that no Python traceback reached the user, that the message
names the user's own file (and row/column where there is one) and that nothing partial was left.
Earlier cases of the issue live beside the code they harden (test_validate: items 1, 6, 7;
test_run/test_cli: items 2, 3, 9, 11); this file gathers the rest.
"""

from __future__ import annotations

import re
import shutil
import struct

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from conftest import kill_parent, shared_path
from gastrorad.cli import app
from gastrorad.errors import InputError
from gastrorad.io import read_image, read_image_geometry

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Rich wraps long table cells at 80 columns; a wide console keeps each message on one line."""
    from gastrorad import cli
    monkeypatch.setattr(cli.console, "width", 400)
    monkeypatch.setattr(cli.err, "width", 400)


def _refused(res, *names, row=None):
    """A refusal: exit 1, no traceback, every name in the message (and ``(row, column)`` in its table)."""
    out = res.output
    if row is not None:
        assert re.search(rf"│ {row[0]} +│ {row[1]} ", out), f"row {row} not in:\n{out}"
    assert res.exit_code == 1, out
    assert "Traceback" not in out and (res.exception is None or isinstance(res.exception, SystemExit)), out
    for name in names:
        assert str(name) in out, f"'{name}' not in:\n{out}"
    return out


def _first_image(study):
    m = pd.read_csv(study / "manifest.csv", dtype=str, keep_default_na=False)
    return m, study / m.loc[0, "image"]


def _validate(study):
    return runner.invoke(app, ["validate", str(study / "study.yaml")], terminal_width=400)


# -- items 4 and 5: images that cannot be read completely ---------------------------------------

def test_truncated_nii_gz_is_refused_by_validate_naming_file_and_row(s1_copy):
    m, path = _first_image(s1_copy)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _refused(_validate(s1_copy), path.name, "truncated", row=(2, "image"))


def test_truncated_raw_nii_is_refused(s1_copy):
    m, path = _first_image(s1_copy)
    raw = s1_copy / "images" / "raw.nii"
    sitk.WriteImage(sitk.ReadImage(str(path)), str(raw), useCompression=False)
    raw.write_bytes(raw.read_bytes()[:-1000])
    m.loc[0, "image"] = "images/raw.nii"
    m.loc[0, "mask"] = ""
    m.loc[0, "bbox"] = "1 1 1 4 4 4"
    m.to_csv(s1_copy / "manifest.csv", index=False)
    _refused(_validate(s1_copy), "raw.nii", "truncated", "the file holds")
    with pytest.raises(InputError, match="truncated"):
        read_image(raw)


def _nifti1_header(size, datatype=4, bitpix=16) -> bytes:
    hdr = bytearray(348)
    struct.pack_into("<i", hdr, 0, 348)
    struct.pack_into("<8h", hdr, 40, 3, *size, 1, 1, 1, 1)
    struct.pack_into("<hh", hdr, 70, datatype, bitpix)
    struct.pack_into("<8f", hdr, 76, 1, 1, 1, 1, 1, 1, 1, 1)
    struct.pack_into("<f", hdr, 108, 352.0)
    hdr[344:348] = b"n+1\0"
    return bytes(hdr) + b"\0" * 4


def test_a_header_claiming_800_cubed_voxels_is_refused_before_allocating(tmp_path):
    huge = tmp_path / "huge.nii"
    huge.write_bytes(_nifti1_header((800, 800, 800)) + b"\0" * 128)  # 480 bytes
    for fn in (read_image_geometry, read_image):
        with pytest.raises(InputError) as exc:
            fn(huge)
        assert "huge.nii" in str(exc.value) and "800 x 800 x 800" in str(exc.value) and "truncated" in str(exc.value)
    absurd = tmp_path / "absurd.nii"
    absurd.write_bytes(_nifti1_header((4000, 4000, 4000)))
    with pytest.raises(InputError, match="more than the"):
        read_image_geometry(absurd)


def test_a_metaimage_header_claiming_more_than_its_file_is_refused(tmp_path):
    img = sitk.Image(16, 16, 8, sitk.sitkInt16)
    sitk.WriteImage(img, str(tmp_path / "ok.mha"))
    data = (tmp_path / "ok.mha").read_bytes()
    (tmp_path / "cut.mha").write_bytes(data[:-100])
    (tmp_path / "huge.mha").write_bytes(data.replace(b"DimSize = 16 16 8", b"DimSize = 800 800 800"))
    assert read_image(tmp_path / "ok.mha").GetSize() == (16, 16, 8)
    for name in ("cut.mha", "huge.mha"):
        for fn in (read_image_geometry, read_image):
            with pytest.raises(InputError, match="truncated") as exc:
                fn(tmp_path / name)
            assert name in str(exc.value)


def test_nrrd_checked_against_its_size(tmp_path):
    img = sitk.Image(16, 16, 8, sitk.sitkInt16)
    for compress, name in ((False, "raw.nrrd"), (True, "gz.nrrd")):
        sitk.WriteImage(img, str(tmp_path / name), useCompression=compress)
        assert read_image_geometry(tmp_path / name).size == (16, 16, 8)
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[:-40])
        with pytest.raises(InputError, match="truncated") as exc:
            read_image(tmp_path / name)
        assert name in str(exc.value)


def _series_copy(tmp_path):
    src = shared_path("dicom", "dicomdirtests", "98892001", "CT5N")
    dst = tmp_path / "series"
    shutil.copytree(src, dst)
    assert read_image(dst).GetSize() == (16, 16, 5)
    return dst, sorted(p for p in dst.iterdir() if p.is_file())


def test_a_dicom_series_with_a_zero_byte_slice_is_refused(tmp_path):
    dst, files = _series_copy(tmp_path)
    files[-1].write_bytes(b"")
    for fn in (read_image_geometry, read_image):
        with pytest.raises(InputError, match="0 bytes") as exc:
            fn(dst)
        assert files[-1].name in str(exc.value)


def test_a_dicom_series_with_a_truncated_slice_is_refused(tmp_path):
    dst, files = _series_copy(tmp_path)
    files[2].write_bytes(files[2].read_bytes()[:-100])
    for fn in (read_image_geometry, read_image):
        with pytest.raises(InputError, match="DICOM slice is truncated") as exc:
            fn(dst)
        assert files[2].name in str(exc.value)


# -- item 8: NIfTI-2 and a mask that is text ----------------------------------------------------

def test_nifti2_reads_like_the_same_volume_in_nifti1(tmp_path):
    nib = pytest.importorskip("nibabel")
    arr = np.random.default_rng(0).integers(-500, 500, (12, 10, 8)).astype(np.int16)  # (i, j, k)
    c, s = np.cos(0.2), np.sin(0.2)  # an oblique acquisition: rotated about x, x flipped
    affine = np.eye(4)
    affine[:3, :3] = np.array([[-1, 0, 0], [0, c, -s], [0, s, c]]) @ np.diag([0.8, 0.7, 2.5])
    affine[:3, 3] = (30.0, -20.0, 5.0)
    nib.save(nib.Nifti1Image(arr, affine), tmp_path / "one.nii.gz")
    nib.save(nib.Nifti2Image(arr, affine), tmp_path / "two.nii.gz")
    nib.save(nib.Nifti2Image(arr, affine), tmp_path / "two.nii")
    one = read_image(tmp_path / "one.nii.gz")
    for name in ("two.nii.gz", "two.nii"):
        two = read_image(tmp_path / name)
        assert np.array_equal(sitk.GetArrayFromImage(one), sitk.GetArrayFromImage(two))
        assert np.allclose(one.GetOrigin(), two.GetOrigin(), atol=1e-4)
        assert np.allclose(one.GetSpacing(), two.GetSpacing(), atol=1e-5)
        assert np.allclose(one.GetDirection(), two.GetDirection(), atol=1e-5)
        assert read_image_geometry(tmp_path / name).size == one.GetSize()


def test_a_mask_that_is_a_text_file_is_named_in_the_message(s1_copy):
    m, _ = _first_image(s1_copy)
    (s1_copy / "masks" / "notes.nii.gz").write_text("tumour outline drawn on slice 12\n")
    m.loc[0, "mask"] = "masks/notes.nii.gz"
    m.to_csv(s1_copy / "manifest.csv", index=False)
    _refused(_validate(s1_copy), "notes.nii.gz", "not a readable NIfTI file", row=(2, "mask"))


# -- item 10: storage faults end in one line naming the path ------------------------------------

def test_an_output_path_that_is_a_file_is_one_line(s1_copy):
    blocker = s1_copy / "blocker"
    blocker.write_text("not a folder")
    res = runner.invoke(app, ["run", str(s1_copy / "study.yaml"), "--output", str(blocker)])
    out = _refused(res, str(blocker), "not a folder")
    assert out.count("error:") == 1


def test_an_unwritable_output_folder_is_one_line(s1_copy, monkeypatch):
    """Root (CI) ignores permission bits, so the fault is raised where the runner first writes."""
    import errno

    import gastrorad.runner as runner_module

    target = s1_copy / "run" / "config.resolved.yaml"

    def refuse(cfg):
        raise PermissionError(errno.EACCES, "Permission denied", str(target))
    monkeypatch.setattr(runner_module, "write_run_metadata", refuse)
    res = runner.invoke(app, ["run", str(s1_copy / "study.yaml")])
    _refused(res, str(target), "Permission denied", "permissions")


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (needs root, as CI has); skipped where mounting is not allowed."""
    import subprocess
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (not root?)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(s1_copy, small_disk):
    res = runner.invoke(app, ["run", str(s1_copy / "study.yaml"), "--output", str(small_disk / "run")])
    _refused(res, "No space left on device", "disk is full", str(small_disk / "run"))
    assert not [p for p in small_disk.rglob(".partial.*")], "temporary files left behind"


# -- items 13 and 14: one writer per run folder, temporaries cleaned, workers die with their parent --

def test_a_second_run_on_a_locked_folder_is_refused_naming_the_pid(s1_copy):
    import os

    from gastrorad.io.lock import run_folder_lock
    with run_folder_lock(s1_copy / "run"):
        res = runner.invoke(app, ["run", str(s1_copy / "study.yaml")])
    _refused(res, f"PID {os.getpid()}", "another gastrorad process")
    assert not (s1_copy / "run" / "validation.json").exists()


def test_temporaries_of_a_killed_run_are_removed_at_the_next_start(tmp_path):
    from gastrorad.io.atomic import atomic_write_text
    from gastrorad.io.lock import run_folder_lock
    (tmp_path / "figures").mkdir()
    left = tmp_path / "figures" / ".partial.roc.png.k2j3h4.png"
    left.write_bytes(b"half a figure")
    keep = tmp_path / "figures" / "roc.png"
    atomic_write_text(keep, "whole")
    with run_folder_lock(tmp_path):
        assert not left.exists() and keep.read_text() == "whole"


def test_pool_workers_die_with_a_killed_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, sys, time\n"
        "from gastrorad.io.parallel import process_pool\n"
        "def pid(_):\n    return os.getpid()\n"
        "def nap(_):\n    time.sleep(60)\n"
        "if __name__ == '__main__':\n"
        "    with process_pool(2) as pool:\n"
        "        pids = set(pool.map(pid, range(20)))\n"
        "        print(' '.join(map(str, pids)), flush=True)\n"
        "        list(pool.map(nap, range(2)))\n")
    workers, alive = kill_parent(script, 10)
    assert workers
    assert not alive, f"workers {alive} outlived their killed parent"


# -- item 16: stage cache keys follow the code --------------------------------------------------

def test_stage_keys_change_with_the_code(s1_copy, monkeypatch):
    import gastrorad.runner as r
    from gastrorad.config import load_study
    from gastrorad.io.hashing import code_hash
    cfg = load_study(s1_copy / "study.yaml")
    stage = next(s for s in r.STAGES if s.name == "fit")
    before = r.stage_key(stage, cfg)
    monkeypatch.setattr(r, "code_hash", lambda *a: "edited")
    assert r.stage_key(stage, cfg) != before
    assert code_hash("preprocess") != code_hash("radiomics") and len(code_hash()) == 64


# -- messages: the user's own file, row and column, in words a clinician can act on -------------

def test_a_semicolon_separated_clinical_table_names_the_delimiter(s1_copy):
    c = pd.read_csv(s1_copy / "clinical.csv", dtype=str)
    c.to_csv(s1_copy / "clinical.csv", sep=";", index=False)
    _refused(_validate(s1_copy), "clinical.csv", "separated by semicolons", "comma-separated")


# -- privacy: no DICOM identifier reaches a log, table, report or bundle ------------------------

IDENTIFIERS = {"PatientName": "DOE^JANE^Q", "PatientBirthDate": "19471203", "InstitutionName": "St Elsewhere Clinic",
               "AccessionNumber": "ACC99812377", "ReferringPhysicianName": "HOUSE^GREGORY",
               "PatientAddress": "12 Hidden Lane", "OtherPatientIDs": "MRN-5550172"}


@pytest.mark.slow
def test_no_dicom_identifier_reaches_any_output(tmp_path):
    """A whole run and a predict on DICOM series whose headers carry identifiers: none of them
    appears in the console output or in any file of the run folder, the bundle or the predictions."""
    import subprocess
    import sys

    import pydicom
    import yaml

    from gastrorad.config.study import deep_merge
    from gastrorad.recipes import find_study_file
    from gastrorad.synth import synthesize
    from test_run import TINY

    data = synthesize("s1", tmp_path / "data", n=60, seed=5, dicom=True, workers=2, matrix_scale=0.5).folder
    touched = 0
    for f in (data / "dicom").rglob("*"):
        if f.is_file():
            ds = pydicom.dcmread(f)
            for key, value in IDENTIFIERS.items():
                setattr(ds, key, value)
            ds.save_as(f)
            touched += 1
    assert touched > 60
    raw = yaml.safe_load(find_study_file("s1_nact_resistance").read_text())
    # the scratch profile: a trained DL signature always gives a model to predict with (the frozen-feature
    # LASSO may select nothing on 60 patients)
    raw = deep_merge(deep_merge(raw, raw.pop("profiles")["scratch"]), TINY["s1_nact_resistance"])
    raw["data"] = {"manifest": str(data / "manifest.csv"), "clinical": str(data / "clinical.csv")}
    raw["output"] = str(tmp_path / "run")
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(raw))
    cli = [sys.executable, "-m", "gastrorad.cli"]
    run = subprocess.run([*cli, "run", str(tmp_path / "study.yaml")], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    pred = subprocess.run([*cli, "predict", str(tmp_path / "run" / "bundle"), str(data / "manifest.csv"),
                           "--clinical", str(data / "clinical.csv"), "--out", str(tmp_path / "pred")],
                          capture_output=True, text=True, timeout=600)
    assert pred.returncode == 0, pred.stdout[-2000:] + pred.stderr[-2000:]
    needles = [v.encode() for v in IDENTIFIERS.values()] + [b"DOE^JANE", b"Elsewhere", b"1947-12-03"]
    for text in (run.stdout, run.stderr, pred.stdout, pred.stderr):
        assert not [n for n in needles if n in text.encode()]
    files = [f for root in (tmp_path / "run", tmp_path / "pred") for f in root.rglob("*") if f.is_file()]
    assert len(files) > 20
    leaks = [(str(f), n.decode()) for f in files for n in needles if n in f.read_bytes()]
    assert not leaks, leaks
