"""`gastrorad serve`: every endpoint and refusal through FastAPI's TestClient, the numbers
against `predict_patients` on the same inputs (to 1e-9), the CLI starting a real server on
loopback, and the page driven in headless Chromium.

One tiny S1 study (the scratch profile: a trained network, so Grad-CAM) is run once for the
module; its bundle is what every test serves.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
from fastapi.testclient import TestClient  # noqa: E402

from gastrorad.bundle import predict_patients  # noqa: E402
from gastrorad.serve import ServeSettings, create_app  # noqa: E402
from gastrorad.serve.store import Store, token_digest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_run import tiny_study  # noqa: E402

CLINICAL = ("age", "sex", "ct")
PID = "P0003"


S5_CLINICAL = ("age", "ki67", "m_stage")


def _tiny_run(root: Path, kind: str, n: int, recipe: str, clinical: dict) -> tuple[Path, Path]:
    """A synthetic cohort run through the recipe with test_run's tiny settings; the clinical
    candidates replaced by ``clinical`` and all kept (no selection), whatever the tiny cohort says,
    so the calculator has a clinical model to run. Returns (bundle folder, cohort folder)."""
    from gastrorad.config.study import load_study
    from gastrorad.runner import run_study
    from gastrorad.synth import synthesize
    data = synthesize(kind, root / kind, n=n, seed=5, workers=1, matrix_scale=0.5).folder
    path = tiny_study(recipe, data, root / "run")
    raw = yaml.safe_load(path.read_text())
    raw["clinical"] = {**clinical, "selection": {"screen_p": None, "method": "none"}}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_study(path)
    run_study(cfg, log=lambda m: None)
    return cfg.output_dir / "bundle", data


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A tiny S1 run (60 patients, scratch profile: a trained network, Grad-CAM)."""
    return _tiny_run(tmp_path_factory.mktemp("serve"), "s1", 60, "s1_nact_resistance", {
        "variables": list(CLINICAL), "categorical": ["sex", "ct"], "reference": {"ct": "T2+3"},
        "groups": {"ct": {"T2+3": ["T2", "T3"], "T4a+4b": ["T4a", "T4b"]}}, "units": {"age": "years"}})


@pytest.fixture(scope="module")
def survival_study(tmp_path_factory):
    """A tiny S5 run (40 patients, fast profile: two phases, Cox models with 36/60-month survival)."""
    return _tiny_run(tmp_path_factory.mktemp("serve_s5"), "s5", 40, "s5_gnen_survival",
                     {"variables": list(S5_CLINICAL), "categorical": ["m_stage"]})


def _settings(tmp: Path, **kw) -> ServeSettings:
    return ServeSettings(state_dir=tmp, workers=1, **kw)


@pytest.fixture(scope="module")
def server(study, tmp_path_factory):
    """A TestClient on the bundle, two users' tokens and the model summary."""
    bundle, _ = study
    settings = _settings(tmp_path_factory.mktemp("state"), zip_max_total_mb=40, zip_max_ratio=100)
    store = Store(settings.db_url)
    alice, bob = store.create_token("alice"), store.create_token("bob")
    with TestClient(create_app([bundle], settings)) as client:
        model = client.get("/api/v1/models", headers=_auth(alice)).json()[0]
        yield {"client": client, "alice": _auth(alice), "bob": _auth(bob), "model": model, "settings": settings,
               "store": store}


def _auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _patient(data: Path, pid: str = PID) -> tuple[dict, pd.Series]:
    clin = pd.read_csv(data / "clinical.csv", dtype={"patient_id": str}).set_index("patient_id")
    man = pd.read_csv(data / "manifest.csv", dtype={"patient_id": str}).set_index("patient_id")
    row = clin.loc[pid]
    return {c: (row[c].item() if hasattr(row[c], "item") else row[c]) for c in CLINICAL}, man.loc[pid]


def _predict(bundle: Path, data: Path, pids: list[str], tmp: Path, manifest: pd.DataFrame | None = None,
             gradcam: bool = False, clinical=CLINICAL) -> pd.DataFrame:
    """`gastrorad predict` on the given patients (their manifest rows and clinical values)."""
    man = manifest if manifest is not None else pd.read_csv(data / "manifest.csv", dtype={"patient_id": str})
    man = man[man.patient_id.isin(pids)].copy()
    for col in ("image", "mask"):
        man[col] = [str((data / v).resolve()) if isinstance(v, str) and v and not Path(v).is_absolute() else v
                    for v in man[col]]
    clin = pd.read_csv(data / "clinical.csv", dtype={"patient_id": str})
    clin = clin[clin.patient_id.isin(pids)][["patient_id", *clinical]]
    tmp.mkdir(parents=True, exist_ok=True)
    man.merge(clin, on="patient_id").to_csv(tmp / "patients.csv", index=False)
    return predict_patients(bundle, tmp / "patients.csv", tmp / "out", gradcam=gradcam).predictions


def _wait(client, headers, jid: str, timeout: float = 180) -> dict:
    t0 = time.time()
    seen = []
    while time.time() - t0 < timeout:
        st = client.get(f"/api/v1/jobs/{jid}", headers=headers).json()
        seen.append(st["progress"])
        if st["status"] in ("done", "failed"):
            assert seen == sorted(seen), "progress never goes back"
            return st
        time.sleep(0.2)
    raise AssertionError(f"job {jid} did not end in {timeout} s")


def _image_job(srv, files: dict, clinical: dict, pid: str = PID, extra: dict | None = None) -> dict:
    c, h, m = srv["client"], srv["alice"], srv["model"]
    r = c.post(f"/api/v1/models/{m['id']}/jobs", headers=h, files=files,
               data={"patient_id": pid, "clinical": json.dumps(clinical), **(extra or {})})
    assert r.status_code == 202, r.text
    return _wait(c, h, r.json()["job_id"]) | {"job_id": r.json()["job_id"]}


# ---- open endpoints, tokens, headers -------------------------------------------------------------

def test_health_page_and_token_required(server):
    c = server["client"]
    assert c.get("/api/v1/health").json()["status"] == "ok"
    page = c.get("/")
    assert page.status_code == 200 and "gastrorad" in page.text and "<script" in page.text
    assert c.get("/static/app.js").status_code == 200 and c.get("/static/../api.py").status_code == 404
    mid = server["model"]["id"]
    for method, path in [("get", "/api/v1/models"), ("get", f"/api/v1/models/{mid}"),
                         ("get", "/api/v1/openapi.json"), ("post", f"/api/v1/models/{mid}/calculate"),
                         ("post", f"/api/v1/models/{mid}/jobs"), ("post", f"/api/v1/models/{mid}/batch"),
                         ("get", "/api/v1/jobs/x"), ("get", f"/api/v1/models/{mid}/nomogram.png")]:
        assert getattr(c, method)(path).status_code == 401, path
        assert getattr(c, method)(path, headers=_auth("not-a-token")).status_code == 401, path
    schema = c.get("/api/v1/openapi.json", headers=server["alice"]).json()
    assert {"/api/v1/models/{mid}/calculate", "/api/v1/models/{mid}/jobs", "/api/v1/models/{mid}/batch",
            "/api/v1/jobs/{jid}", "/api/v1/health"} <= set(schema["paths"])


def test_security_headers_and_no_cors(server):
    c = server["client"]
    for path in ("/", "/api/v1/health", "/api/v1/models"):
        r = c.get(path, headers={"Origin": "https://evil.example"})
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "access-control-allow-origin" not in r.headers
    pre = c.options("/api/v1/models", headers={"Origin": "https://evil.example",
                                               "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in pre.headers


def test_create_token_cli_stores_only_the_hash(tmp_path):
    from typer.testing import CliRunner

    from gastrorad.cli import app
    res = CliRunner().invoke(app, ["serve", "--state", str(tmp_path), "--create-token", "carol"], terminal_width=250)
    assert res.exit_code == 0, res.output
    token = res.output.strip().splitlines()[-1]
    assert len(token) >= 40
    store = Store(ServeSettings(state_dir=tmp_path).db_url)
    assert store.token_name(token) == "carol" and store.token_name(token + "x") is None
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("serve.db*"))  # with SQLite's write-ahead log
    assert token.encode() not in raw and token_digest(token).encode() in raw
    again = CliRunner().invoke(app, ["serve", "--state", str(tmp_path), "--create-token", "carol"], terminal_width=250)
    assert again.exit_code == 1 and "already" in again.output and store.token_name(token) == "carol"


# ---- models and the calculator --------------------------------------------------------------------

def test_models_list_the_card(server, study):
    bundle, _ = study
    from gastrorad.io.hashing import file_hash
    m = server["model"]
    assert m["bundle_sha256"] == file_hash(bundle / "bundle.json")
    assert m["calculator_models"] == ["clinical"] and m["models"]["integrated"]["needs_image"]
    card = m["card"]
    assert card["intended_use"] and card["outcome"] and card["metric"] == "AUC"
    assert {c["cohort"] for c in card["cohorts"]} >= {"training", "internal"}
    perf = pd.DataFrame(card["performance"])
    assert {"clinical", "integrated"} <= set(perf.model) and (perf.lower <= perf.auc_or_c).all()
    assert any(r["item"] == "23a" for r in card["tripod"])
    assert m["clinical"]["age"]["type"] == "numeric" and len(m["clinical"]["age"]["range"]) == 2
    assert m["clinical"]["age"]["unit"] == "years"  # clinical.units of the study file, shown on the form
    assert set(m["clinical"]["ct"]["levels"]) == {"T2", "T3", "T4a", "T4b"}  # the levels a user types
    png = server["client"].get(f"/api/v1/models/{m['id']}/nomogram.png", headers=server["alice"])
    assert png.content[:4] == b"\x89PNG"
    assert server["client"].get("/api/v1/models/nope", headers=server["alice"]).status_code == 404


def test_calculator_equals_predict(server, study, tmp_path):
    bundle, data = study
    c, h, m = server["client"], server["alice"], server["model"]
    pids = ["P0001", "P0002", PID, "P0010"]
    preds = _predict(bundle, data, pids, tmp_path)
    for pid in pids:
        values, _ = _patient(data, pid)
        r = c.post(f"/api/v1/models/{m['id']}/calculate", headers=h, json={"patient_id": pid, "values": values})
        assert r.status_code == 200, r.text
        got = r.json()
        ref = preds[(preds.patient_id == pid) & (preds.model == "clinical")].iloc[0]
        assert abs(got["models"]["clinical"]["probability"] - ref.score) < 1e-9
        assert abs(got["models"]["clinical"]["lp"] - ref.lp) < 1e-9
        assert got["models"]["clinical"]["risk_group"] == ref.risk_group
        assert got["models"]["integrated"]["score"] is None  # needs the image
        nomo = preds[(preds.patient_id == pid) & (preds.model == "integrated")].iloc[0]
        for axis, pts in got["nomogram"]["points"].items():
            if axis in CLINICAL:
                assert abs(pts - nomo[f"points_{axis}"]) < 1e-9
            else:
                assert pts is None
    jid = got["job_id"]
    assert c.get(f"/api/v1/jobs/{jid}", headers=h).json()["status"] == "done"
    assert c.get(f"/api/v1/jobs/{jid}/nomogram.png", headers=h).content[:4] == b"\x89PNG"
    summary = c.get(f"/api/v1/jobs/{jid}/summary.png", headers=h)
    assert summary.content[:4] == b"\x89PNG" and "attachment" in summary.headers["content-disposition"]
    assert c.get(f"/api/v1/jobs/{jid}", headers=server["bob"]).status_code == 404  # another user's job


def test_calculator_refusals_and_flags(server):
    c, h, m = server["client"], server["alice"], server["model"]
    url = f"/api/v1/models/{m['id']}/calculate"
    r = c.post(url, headers=h, json={"patient_id": "../../x", "values": {"age": "old", "sex": "other", "bmi2": 1}})
    assert r.status_code == 422
    cols = {p["column"]: p["reason"] for p in r.json()["problems"]}
    assert "path separator" in cols["patient_id"] and "not an input" in cols["bmi2"]
    r = c.post(url, headers=h, json={"patient_id": "x", "values": {"age": "old", "sex": "other", "ct": "T9"}})
    cols = {p["column"]: p["reason"] for p in r.json()["problems"]}
    assert "not a number" in cols["age"] and "not seen in the training" in cols["sex"] and "ct" in cols
    lo, hi = m["clinical"]["age"]["range"]
    r = c.post(url, headers=h, json={"patient_id": "x", "values": {"age": hi + 30, "sex": "male"}})
    flags = {f["variable"]: f["reason"] for f in r.json()["flags"]}
    assert "outside the training range" in flags["age"] and "imputes" in flags["ct"]
    assert c.post(url, headers=h, json={"values": {"age": lo}}).status_code == 200


# ---- image jobs ---------------------------------------------------------------------------------

def test_image_job_equals_predict(server, study, tmp_path):
    bundle, data = study
    values, row = _patient(data)
    files = {"image_venous": ("ct.nii.gz", (data / row.image).read_bytes()),
             "mask_venous": ("roi.nii.gz", (data / row["mask"]).read_bytes())}
    st = _image_job(server, files, values)
    assert st["status"] == "done", st["problems"]
    preds = _predict(bundle, data, [PID], tmp_path, gradcam=True)
    for name, got in st["result"]["models"].items():
        ref = preds[preds.model == name].iloc[0]
        assert abs(got["score"] - ref.score) < 1e-9 and got["risk_group"] == ref.risk_group
    nomo = preds[preds.model == "integrated"].iloc[0]
    assert abs(st["result"]["nomogram"]["total"] - nomo.points_total) < 1e-9
    c, h, jid = server["client"], server["alice"], st["job_id"]
    csv = pd.read_csv(io.StringIO(c.get(f"/api/v1/jobs/{jid}/predictions.csv", headers=h).text))
    np.testing.assert_allclose(csv.score, preds.score, rtol=0, atol=1e-9)
    assert c.get(f"/api/v1/jobs/{jid}/gradcam.png", headers=h).content[:4] == b"\x89PNG"
    assert c.get(f"/api/v1/jobs/{jid}/summary.png", headers=h).content[:4] == b"\x89PNG"
    folder = server["settings"].jobs_dir / jid
    assert not (folder / "uploads").exists() and not (folder / "work").exists()  # images gone with the job
    audit = [a for a in server["store"].audit_rows() if a.job_id == jid]
    assert audit and audit[0].outcome == "done" and audit[0].bundle_hash == server["model"]["bundle_sha256"]
    assert set(json.loads(audit[0].input_hashes)) == {"image_venous", "mask_venous", "clinical"}


def _dicom_zip(image: Path, modality: str = "CT") -> tuple[bytes, list[Path], Path]:
    import pydicom

    from gastrorad.synth.dicom_writer import write_ct_series
    folder = image.parent / f"dicom_{modality}"
    files = write_ct_series(sitk.ReadImage(str(image)), folder, patient_id="Doe^Jane", series_key="v")
    if modality != "CT":
        for f in files:
            ds = pydicom.dcmread(f)
            ds.Modality = modality
            ds.save_as(f)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            z.write(f, f"series/{f.name}")
    return buf.getvalue(), files, folder


def test_dicom_zip_with_seg_equals_predict_and_non_ct_refused(server, study, tmp_path):
    from gastrorad.synth.dicom_writer import write_seg
    bundle, data = study
    values, row = _patient(data)
    shutil.copy(data / row.image, tmp_path / "ct.nii.gz")
    payload, files, folder = _dicom_zip(tmp_path / "ct.nii.gz")
    seg = write_seg(sitk.ReadImage(str(data / row["mask"])), files, tmp_path / "seg.dcm")
    st = _image_job(server, {"image_venous": ("series.zip", payload), "mask_venous": ("seg.dcm", seg.read_bytes())},
                    values)
    assert st["status"] == "done", st["problems"]
    man = pd.DataFrame([{"patient_id": PID, "image": str(folder), "mask": str(seg), "phase": "venous"}])
    preds = _predict(bundle, data, [PID], tmp_path / "p", manifest=man)
    for name, got in st["result"]["models"].items():
        assert abs(got["score"] - preds[preds.model == name].score.iloc[0]) < 1e-9
    text = json.dumps(server["client"].get(f"/api/v1/jobs/{st['job_id']}", headers=server["alice"]).json())
    assert "Doe" not in text  # no DICOM identifier shown
    assert not any(b"Doe" in p.read_bytes() for p in server["settings"].state_dir.glob("serve.db*"))
    mr, _, _ = _dicom_zip(tmp_path / "ct.nii.gz", modality="MR")
    st = _image_job(server, {"image_venous": ("mr.zip", mr), "mask_venous": ("seg.dcm", seg.read_bytes())}, values)
    assert st["status"] == "failed"
    assert st["problems"][0]["file"] == "image_venous" and "not CT" in st["problems"][0]["reason"]


def test_rtstruct_and_box_jobs_equal_predict(server, study, tmp_path):
    """The other two ROI kinds: an RTSTRUCT naming its structure, and a box instead of a mask."""
    from gastrorad.synth.dicom_writer import write_rtstruct
    bundle, data = study
    values, row = _patient(data)
    shutil.copy(data / row.image, tmp_path / "ct.nii.gz")
    payload, files, folder = _dicom_zip(tmp_path / "ct.nii.gz")
    mask = sitk.ReadImage(str(data / row["mask"]))
    rt = write_rtstruct(mask, files, tmp_path / "rt.dcm", name="GTV")
    st = _image_job(server, {"image_venous": ("series.zip", payload), "mask_venous": ("rt.dcm", rt.read_bytes())},
                    values, extra={"mask_label_venous": "GTV"})
    assert st["status"] == "done", st["problems"]
    man = pd.DataFrame([{"patient_id": PID, "image": str(folder), "mask": f"{rt}#GTV", "phase": "venous"}])
    preds = _predict(bundle, data, [PID], tmp_path / "rt", manifest=man)
    for name, got in st["result"]["models"].items():
        assert abs(got["score"] - preds[preds.model == name].score.iloc[0]) < 1e-9
    z, y, x = np.nonzero(sitk.GetArrayFromImage(mask))
    box = f"{x.min()} {y.min()} {z.min()} {x.max()} {y.max()} {z.max()}"
    st = _image_job(server, {"image_venous": ("ct.nii.gz", (data / row.image).read_bytes())}, values,
                    extra={"bbox_venous": box})
    assert st["status"] == "done", st["problems"]
    man = pd.DataFrame([{"patient_id": PID, "image": str(data / row.image), "mask": "", "bbox": box,
                         "phase": "venous"}])
    preds = _predict(bundle, data, [PID], tmp_path / "box", manifest=man)
    for name, got in st["result"]["models"].items():
        assert abs(got["score"] - preds[preds.model == name].score.iloc[0]) < 1e-9


def _bad_mask(mask: Path, out: Path) -> Path:
    """The mask on another grid (spacing 1.5 times the image's)."""
    img = sitk.ReadImage(str(mask))
    img.SetSpacing(tuple(s * 1.5 for s in img.GetSpacing()))
    sitk.WriteImage(img, str(out))
    return out


def test_mask_geometry_mismatch_and_missing_inputs(server, study, tmp_path):
    _, data = study
    values, row = _patient(data)
    _bad_mask(data / row["mask"], tmp_path / "bad.nii.gz")
    st = _image_job(server, {"image_venous": ("ct.nii.gz", (data / row.image).read_bytes()),
                             "mask_venous": ("bad.nii.gz", (tmp_path / "bad.nii.gz").read_bytes())}, values)
    assert st["status"] == "failed"
    p = st["problems"][0]
    assert p["file"].startswith("mask_venous") and ("geometry" in p["reason"] or "spacing" in p["reason"]), p
    assert "/" not in p["file"] and str(server["settings"].state_dir) not in json.dumps(st)  # no server path
    st = _image_job(server, {"image_venous": ("ct.nii.gz", (data / row.image).read_bytes())}, values)
    assert st["status"] == "failed" and st["problems"][0]["file"] == "mask_venous"
    st = _image_job(server, {"image_venous": ("ct.txt", b"hello"), "mask_venous": ("m.nii.gz", b"x")}, values)
    assert st["status"] == "failed" and "not an image" in st["problems"][0]["reason"]
    r = server["client"].post(f"/api/v1/models/{server['model']['id']}/jobs", headers=server["alice"],
                              data={"patient_id": PID, "clinical": "[1]"})
    assert r.status_code == 422 and r.json()["problems"][0]["column"] is None


def _zip(entries: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, content in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            z.writestr(info, content)
    return buf.getvalue()


@pytest.mark.parametrize("entries, reason", [
    ({"../../evil.txt": b"x"}, "zip slip"),
    ({"/etc/evil.txt": b"x"}, "zip slip"),
    ({"a/../../evil.txt": b"x"}, "zip slip"),
    ({"zeros.bin": b"\0" * 30_000_000}, "zip bomb"),                     # ratio > 100
    ({f"r{i}.bin": os.urandom(1_000_000) for i in range(45)}, "zip bomb"),  # 45 MB > 40 MB total
])
def test_zip_slip_and_bomb_refused(server, study, entries, reason):
    _, data = study
    values, _ = _patient(data)
    st = _image_job(server, {"image_venous": ("series.zip", _zip(entries)),
                             "mask_venous": ("m.nii.gz", b"x")}, values)
    assert st["status"] == "failed" and reason in st["problems"][0]["reason"], st["problems"]
    assert not (server["settings"].state_dir.parent / "evil.txt").exists()
    assert not list(server["settings"].state_dir.rglob("evil.txt"))


def test_upload_limit_and_queue_limit(study, tmp_path):
    bundle, _ = study
    settings = _settings(tmp_path / "a", max_upload_mb=1)
    token = Store(settings.db_url).create_token("u")
    with TestClient(create_app([bundle], settings)) as c:
        mid = c.get("/api/v1/models", headers=_auth(token)).json()[0]["id"]
        r = c.post(f"/api/v1/models/{mid}/jobs", headers=_auth(token), data={"patient_id": "P1"},
                   files={"image_venous": ("ct.nii.gz", os.urandom(1_500_000))})
        assert r.status_code == 413 and "limit is 1 MB" in r.json()["detail"]
    settings = _settings(tmp_path / "b", queue_limit=0)
    token = Store(settings.db_url).create_token("u")
    with TestClient(create_app([bundle], settings)) as c:
        r = c.post(f"/api/v1/models/{mid}/batch", headers=_auth(token), files={"patients": ("p.csv", b"a")})
        assert r.status_code == 429


def test_older_bundle_without_card_and_edited_bundle(study, tmp_path):
    """A bundle exported before card.json is served (no card, levels from the encoder); a bundle
    whose card was edited after export is refused at start, naming the file."""
    from gastrorad.errors import InputError
    bundle, data = study
    old = tmp_path / "old"
    shutil.copytree(bundle, old)
    (old / "card.json").unlink()
    info = json.loads((old / "bundle.json").read_text())
    del info["files"]["card.json"]
    (old / "bundle.json").write_text(json.dumps(info))
    settings = _settings(tmp_path / "state")
    h = _auth(Store(settings.db_url).create_token("o"))
    with TestClient(create_app([old], settings)) as c:
        m = c.get("/api/v1/models", headers=h).json()[0]
        assert not m["card_complete"] and set(m["clinical"]["ct"]["levels"]) == {"T2", "T3", "T4a", "T4b"}
        values, _ = _patient(data)
        r = c.post(f"/api/v1/models/{m['id']}/calculate", headers=h, json={"patient_id": PID, "values": values})
        assert r.status_code == 200 and r.json()["models"]["clinical"]["probability"] is not None
    edited = tmp_path / "edited"
    shutil.copytree(bundle, edited)
    card = json.loads((edited / "card.json").read_text())
    card["performance"] = []
    (edited / "card.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="changed since export"):
        create_app([edited], _settings(tmp_path / "state2"))


def test_chunked_upload_over_the_limit_and_interrupted_jobs(study, tmp_path):
    bundle, _ = study
    settings = _settings(tmp_path, max_upload_mb=1)
    store = Store(settings.db_url)
    token = store.create_token("u")
    stale = store.new_job("image", "m", "h", "u", "P1", status="running")  # a server stopped mid-job
    with TestClient(create_app([bundle], settings)) as c:
        job = c.get(f"/api/v1/jobs/{stale}", headers=_auth(token)).json()
        assert job["status"] == "failed" and "server stopped" in job["problems"][0]["reason"]
        mid = c.get("/api/v1/models", headers=_auth(token)).json()[0]["id"]

        def body():  # no Content-Length: the limit is enforced while the body streams
            for _ in range(20):
                yield b"x" * 100_000
        r = c.post(f"/api/v1/models/{mid}/batch", content=body(),
                   headers={**_auth(token), "Content-Type": "multipart/form-data; boundary=zzz"})
        assert r.status_code == 413


# ---- batch ----------------------------------------------------------------------------------------

def test_batch_equals_predict(server, study, tmp_path):
    bundle, data = study
    pids = ["P0001", "P0002", PID]
    man = pd.read_csv(data / "manifest.csv", dtype={"patient_id": str})
    man = man[man.patient_id.isin(pids)]
    clin = pd.read_csv(data / "clinical.csv", dtype={"patient_id": str})[["patient_id", *CLINICAL]]
    table = man.merge(clin, on="patient_id")
    archive = _zip({p: (data / p).read_bytes() for p in [*table.image, *table["mask"]]})
    c, h, m = server["client"], server["alice"], server["model"]
    r = c.post(f"/api/v1/models/{m['id']}/batch", headers=h,
               files={"patients": ("patients.csv", table.to_csv(index=False).encode()),
                      "archive": ("images.zip", archive)})
    assert r.status_code == 202, r.text
    st = _wait(c, h, r.json()["job_id"])
    assert st["status"] == "done", st["problems"]
    got = pd.read_csv(io.StringIO(c.get(f"/api/v1/jobs/{st['job_id']}/predictions.csv", headers=h).text),
                      dtype={"patient_id": str})
    ref = _predict(bundle, data, pids, tmp_path)
    both = got.merge(ref, on=["patient_id", "model"], suffixes=("", "_ref"))
    assert len(both) == len(ref) == 2 * len(pids)
    np.testing.assert_allclose(both.score, both.score_ref, rtol=0, atol=1e-9)
    # paths outside the archive are refused, with the row and column
    bad = table.copy()
    bad.loc[bad.index[0], "image"] = "/etc/passwd"
    bad.loc[bad.index[1], "mask"] = "../../secret.nii.gz"
    r = c.post(f"/api/v1/models/{m['id']}/batch", headers=h,
               files={"patients": ("patients.csv", bad.to_csv(index=False).encode()),
                      "archive": ("images.zip", archive)})
    st = _wait(c, h, r.json()["job_id"])
    assert st["status"] == "failed"
    assert {(p["row"], p["column"]) for p in st["problems"]} == {(2, "image"), (3, "mask")}


def test_two_bundles_side_by_side_and_survival_equals_predict(study, survival_study, tmp_path):
    """S1 and S5 served together; S5's t-year survival from the calculator and from a two-phase
    image job are predict's numbers."""
    s1, _ = study
    s5, data = survival_study
    settings = _settings(tmp_path / "state")
    h = _auth(Store(settings.db_url).create_token("s"))
    with TestClient(create_app([s1, s5], settings)) as c:
        models = {m["study"]: m for m in c.get("/api/v1/models", headers=h).json()}
        assert set(models) == {"s1_nact_resistance", "s5_gnen_survival"}
        m = models["s5_gnen_survival"]
        assert m["outcome"] == "survival" and {36.0, 60.0} <= set(m["horizons"])
        assert m["card"]["metric"] == "Harrell C-index"
        pid = "P0002"
        clin = pd.read_csv(data / "clinical.csv", dtype={"patient_id": str}).set_index("patient_id").loc[pid]
        values = {v: (clin[v].item() if hasattr(clin[v], "item") else clin[v]) for v in S5_CLINICAL}
        preds = _predict(s5, data, [pid], tmp_path / "p", clinical=S5_CLINICAL)
        got = c.post(f"/api/v1/models/{m['id']}/calculate", headers=h, json={"patient_id": pid, "values": values})
        assert got.status_code == 200, got.text
        ref = preds[preds.model == "clinical"].iloc[0]
        for t, surv in got.json()["models"]["clinical"]["survival"].items():
            assert abs(surv - ref[f"survival_at_{t}"]) < 1e-9
        man = pd.read_csv(data / "manifest.csv", dtype={"patient_id": str})
        man = man[(man.patient_id == pid) & man.reader.isna()] if "reader" in man else man[man.patient_id == pid]
        files = {}
        for r in man.itertuples():
            files[f"image_{r.phase}"] = (f"{r.phase}.nii.gz", (data / r.image).read_bytes())
            files[f"mask_{r.phase}"] = (f"{r.phase}_roi.nii.gz", (data / r.mask).read_bytes())
        r = c.post(f"/api/v1/models/{m['id']}/jobs", headers=h, files=files,
                   data={"patient_id": pid, "clinical": json.dumps(values)})
        assert r.status_code == 202, r.text
        st = _wait(c, h, r.json()["job_id"])
        assert st["status"] == "done", st["problems"]
        for name, res in st["result"]["models"].items():
            ref = preds[preds.model == name].iloc[0]
            assert abs(res["lp"] - ref.lp) < 1e-9 and res["risk_group"] == ref.risk_group
            for t, surv in res["survival"].items():
                assert abs(surv - ref[f"survival_at_{t}"]) < 1e-9
        summary = c.get(f"/api/v1/jobs/{r.json()['job_id']}/summary.png", headers=h)
        assert summary.content[:4] == b"\x89PNG"


# ---- the real server: CLI on loopback, and the page in Chromium ----------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str | None = None):
    import urllib.request
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status, r.read()


def test_cli_serves_on_loopback(study, tmp_path):
    bundle, _ = study
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "gastrorad.cli", "serve"]
    out = subprocess.run([*cli, "--state", str(tmp_path), "--create-token", "dora"], capture_output=True, text=True,
                         env=env, check=True).stdout
    token = out.strip().splitlines()[-1]
    proc = subprocess.Popen([*cli, str(bundle), "--port", str(port), "--state", str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(100):
            try:
                status, body = _get(f"http://127.0.0.1:{port}/api/v1/health")
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError("server did not start")
        assert status == 200 and json.loads(body)["models"] == 1
        status, body = _get(f"http://127.0.0.1:{port}/api/v1/models", token)
        assert json.loads(body)[0]["study"] == "s1_nact_resistance"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert f"http://127.0.0.1:{port}/" in proc.stdout.read()


class LiveServer:
    """uvicorn in a thread on 127.0.0.1 (stopped on exit)."""

    def __init__(self, app):
        import uvicorn
        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=20)


def _browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("headless browser test needs Debian's chromium and chromium-driver "
                    "(apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (dev extra)")
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1700",
              "--disable-gpu"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(driver), options=opts)


def test_page_in_headless_chromium(study, tmp_path):
    """Sign in, read the card, fill the form, calculate, upload a case, read the results from the
    page and compare them with `predict`; screenshots to $GASTRORAD_SCREENSHOTS (docs/images/) when set."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
    bundle, data = study
    shots = Path(os.environ.get("GASTRORAD_SCREENSHOTS") or tmp_path)
    settings = _settings(tmp_path / "state")
    token = Store(settings.db_url).create_token("browser")
    values, row = _patient(data)
    preds = _predict(bundle, data, [PID], tmp_path / "pred")
    driver = _browser()
    try:
        with LiveServer(create_app([bundle], settings)) as url:
            wait = WebDriverWait(driver, 60)
            driver.get(url + "/")
            driver.find_element(By.ID, "token").send_keys("wrong")
            driver.find_element(By.ID, "login-button").click()
            wait.until(lambda d: "not accepted" in d.find_element(By.ID, "login-error").text)
            driver.find_element(By.ID, "token").clear()
            driver.find_element(By.ID, "token").send_keys(token)
            driver.find_element(By.ID, "login-button").click()
            wait.until(lambda d: d.find_element(By.ID, "app").is_displayed())
            assert "AUC" in driver.find_element(By.ID, "performance").text
            assert driver.find_element(By.ID, "v_age").get_attribute("type") == "number"
            driver.save_screenshot(str(shots / "serve_card.png"))
            driver.find_element(By.ID, "patient_id").clear()
            driver.find_element(By.ID, "patient_id").send_keys(PID)
            for name, value in values.items():
                field = driver.find_element(By.ID, f"v_{name}")
                if field.tag_name == "select":
                    Select(field).select_by_value(str(value))
                else:
                    field.send_keys(str(value))
            driver.find_element(By.ID, "calculate").click()
            wait.until(lambda d: d.find_element(By.ID, "result").is_displayed())
            cell = driver.find_element(By.CSS_SELECTOR, "tr[data-model=clinical] td.score")
            ref = preds[preds.model == "clinical"].iloc[0]
            assert abs(float(cell.get_attribute("data-score")) - ref.score) < 1e-9
            assert f"{ref.score:.3f}" in cell.text
            driver.execute_script("document.getElementById('result').scrollIntoView()")
            driver.save_screenshot(str(shots / "serve_calculator.png"))
            driver.find_element(By.ID, "image_venous").send_keys(str((data / row.image).resolve()))
            driver.find_element(By.ID, "mask_venous").send_keys(str((data / row["mask"]).resolve()))
            driver.find_element(By.ID, "submit-images").click()
            WebDriverWait(driver, 180).until(lambda d: d.find_element(By.ID, "gradcam-fig").is_displayed())
            cell = driver.find_element(By.CSS_SELECTOR, "tr[data-model=integrated] td.score")
            ref = preds[preds.model == "integrated"].iloc[0]
            assert abs(float(cell.get_attribute("data-score")) - ref.score) < 1e-9
            risk = driver.find_element(By.CSS_SELECTOR, "tr[data-model=integrated] td:nth-child(3)").text
            assert risk == ref.risk_group.upper()
            wait.until(lambda d: d.execute_script("return document.getElementById('gradcam').naturalWidth") > 0)
            driver.execute_script("document.getElementById('result').scrollIntoView()")
            driver.save_screenshot(str(shots / "serve_image_result.png"))
            job = driver.find_element(By.ID, "result").get_attribute("data-job")
            status, png = _get(f"{url}/api/v1/jobs/{job}/summary.png", token)
            assert status == 200 and png[:4] == b"\x89PNG"
            (shots / "serve_summary.png").write_bytes(png)
            # a mask on another grid: a clear error on the page, naming the upload
            bad = _bad_mask(data / row["mask"], tmp_path / "bad_mask.nii.gz")
            driver.find_element(By.ID, "mask_venous").send_keys(str(bad))
            driver.find_element(By.ID, "submit-images").click()
            WebDriverWait(driver, 120).until(lambda d: "mask_venous" in d.find_element(By.ID, "error").text)
            assert "grid" in driver.find_element(By.ID, "error").text
            assert not driver.find_element(By.ID, "result").is_displayed()  # the last patient's result is gone
            # an out-of-range value is flagged in the form
            age = driver.find_element(By.ID, "v_age")
            age.clear()
            age.send_keys("150")
            assert "flagged" in age.get_attribute("class")
            driver.execute_script("document.getElementById('clinical').scrollIntoView()")
            driver.save_screenshot(str(shots / "serve_error_and_flag.png"))
            # a batch job from the page: patients CSV + zip of the images, predictions CSV to download
            man = pd.read_csv(data / "manifest.csv", dtype={"patient_id": str})
            table = man[man.patient_id == PID].merge(pd.DataFrame([{"patient_id": PID, **values}]), on="patient_id")
            (tmp_path / "batch.csv").write_text(table.to_csv(index=False))
            (tmp_path / "batch.zip").write_bytes(_zip({p: (data / p).read_bytes()
                                                       for p in [*table.image, *table["mask"]]}))
            driver.find_element(By.ID, "batch-patients").send_keys(str(tmp_path / "batch.csv"))
            driver.find_element(By.ID, "batch-archive").send_keys(str(tmp_path / "batch.zip"))
            driver.find_element(By.ID, "submit-batch").click()
            WebDriverWait(driver, 180).until(lambda d: d.find_element(By.ID, "batch-result").is_displayed()
                                             or d.find_element(By.ID, "batch-error").text)
            assert not driver.find_element(By.ID, "batch-error").text
            assert "1 patient(s) scored" in driver.find_element(By.ID, "batch-summary").text
            job = driver.find_element(By.ID, "batch-result").get_attribute("data-job")
            status, body = _get(f"{url}/api/v1/jobs/{job}/predictions.csv", token)
            got = pd.read_csv(io.StringIO(body.decode()), dtype={"patient_id": str}).set_index("model")
            for name in ("clinical", "integrated"):
                assert abs(got.loc[name, "score"] - preds[preds.model == name].score.iloc[0]) < 1e-9
            driver.execute_script("document.getElementById('batch-form').scrollIntoView()")
            driver.save_screenshot(str(shots / "serve_batch.png"))
    finally:
        driver.quit()
