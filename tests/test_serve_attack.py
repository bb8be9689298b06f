"""`gastrorad serve` under hostile-but-fair requests and faults (issue 28): each test is one of
the failures a probe of the server found, and fails on the code before its fix.

The tiny S1 bundle of test_serve is built once for this module too (its `study` fixture).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
import struct
import sys
import zipfile
from pathlib import Path

import pytest
import SimpleITK as sitk

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
from fastapi.testclient import TestClient  # noqa: E402

from gastrorad.errors import InputError  # noqa: E402
from gastrorad.serve import create_app  # noqa: E402
from gastrorad.serve.security import SECURITY_HEADERS, Guard, RedactQuery, access_log_config  # noqa: E402
from gastrorad.serve.store import Job, Store  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_serve import PID, _auth, _image_job, _patient, _settings, study  # noqa: E402,F401


@pytest.fixture(scope="module")
def srv(study, tmp_path_factory):
    bundle, _ = study
    settings = _settings(tmp_path_factory.mktemp("attack_state"))
    store = Store(settings.db_url)
    alice = store.create_token("alice")
    with TestClient(create_app([bundle], settings), raise_server_exceptions=False) as client:
        model = client.get("/api/v1/models", headers=_auth(alice)).json()[0]
        yield {"client": client, "alice": _auth(alice), "model": model, "settings": settings, "store": store}


def _calc_url(srv) -> str:
    return f"/api/v1/models/{srv['model']['id']}/calculate"


def _jobs(store: Store) -> int:
    with store.session() as s:
        return s.query(Job).count()


# ---- 1, 9: the token before the body; JSON bodies capped --------------------------------------

def test_token_is_checked_before_any_body_is_read():
    """Guard alone, around an app that must never run: a tokenless request is refused with 401
    without one call to receive(), so no body is buffered or parsed."""
    class Tokens:
        def token_name(self, token):
            return "alice" if token == "good" else None

        def audit(self, *a, **k):
            pass

    async def app(scope, receive, send):
        raise AssertionError("the endpoint ran")

    guard = Guard(app, store=Tokens(), upload_limit=10**9, json_limit=64_000, upload_paths=lambda p: False)
    reads, sent = [], []

    async def receive():
        reads.append(1)
        return {"type": "http.request", "body": b"{not json" * 10**6, "more_body": False}

    async def send(message):
        sent.append(message)
    scope = {"type": "http", "method": "POST", "path": "/api/v1/models/x/calculate",
             "headers": [(b"content-type", b"application/json"), (b"content-length", b"9000000")]}
    asyncio.run(guard(scope, receive, send))
    assert sent[0]["status"] == 401 and reads == []


def test_tokenless_bad_json_is_401_and_json_bodies_are_capped(srv):
    c = srv["client"]
    r = c.post(_calc_url(srv), content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 401, r.text
    r = c.post(_calc_url(srv), content=b"x" * 7_000_000, headers={"Content-Type": "application/json"})
    assert r.status_code == 401
    big = json.dumps({"patient_id": "P1", "values": {"age": 60, "pad": "x" * 100_000}}).encode()
    r = c.post(_calc_url(srv), content=big, headers={**srv["alice"], "Content-Type": "application/json"})
    assert r.status_code == 413 and "64 KB" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"patient_id": "P1", "values": {"pad": "'
        for _ in range(20):
            yield b"x" * 10_000
        yield b'"}}'
    r = c.post(_calc_url(srv), content=chunks(), headers={**srv["alice"], "Content-Type": "application/json"})
    assert r.status_code == 413, r.text


# ---- 7, 8: non-finite numbers and deep nesting -------------------------------------------------

def test_non_finite_numbers_are_refused_before_anything_is_stored(srv, study):
    c, h = srv["client"], srv["alice"]
    _, data = study
    values, _ = _patient(data)
    before = _jobs(srv["store"])
    for bad in ("NaN", "Infinity", "-Infinity", "1e999"):
        body = json.dumps({"patient_id": PID, "values": {**values, "age": 1.5}}).replace("1.5", bad)
        r = c.post(_calc_url(srv), content=body, headers={**h, "Content-Type": "application/json"})
        assert r.status_code == 422, (bad, r.text)
    r = c.post(f"/api/v1/models/{srv['model']['id']}/jobs", headers=h,
               data={"patient_id": PID, "clinical": '{"age": NaN}'}, files={"image_venous": ("ct.nii.gz", b"x")})
    assert r.status_code == 422 and "finite" in r.text
    assert _jobs(srv["store"]) == before
    # a row stored by an older server with NaN in it, or broken JSON, still reads
    for text in ('{"models": {}, "values": {"age": NaN}}', "{broken"):
        jid = srv["store"].new_job("calculator", srv["model"]["id"], "h", "alice", "P9")
        srv["store"].update_job(jid, status="done", result=text, problems="[NaN")
        r = c.get(f"/api/v1/jobs/{jid}", headers=h)
        assert r.status_code == 200, r.text
        assert r.json()["problems"] == []


def test_deeply_nested_clinical_field_is_422(srv):
    r = srv["client"].post(f"/api/v1/models/{srv['model']['id']}/jobs", headers=srv["alice"],
                           data={"patient_id": PID, "clinical": "[" * 100_000 + "]" * 100_000})
    assert r.status_code == 422, r.text
    r = srv["client"].post(f"/api/v1/models/{srv['model']['id']}/jobs", headers=srv["alice"],
                           data={"patient_id": PID, "clinical": '{"age": ' + "[" * 50 + "]" * 50 + "}"})
    assert r.status_code == 422 and "nested" in r.text
    body = '{"patient_id": "P1", "values": ' + "[" * 20_000 + "]" * 20_000 + "}"
    r = srv["client"].post(_calc_url(srv), content=body,
                           headers={**srv["alice"], "Content-Type": "application/json"})
    assert r.status_code == 422, r.text


# ---- 10: security headers on every response ----------------------------------------------------

def test_error_responses_carry_the_security_headers(srv, monkeypatch):
    c, h = srv["client"], srv["alice"]
    r = c.post(_calc_url(srv), content=b"{}", headers={**h, "Content-Length": "999999999",
                                                         "Content-Type": "application/json"})
    responses = {"413": r, "401": c.get("/api/v1/models")}

    def boom(*a, **k):
        raise RuntimeError("a bug")
    monkeypatch.setattr("gastrorad.serve.api.calculate", boom)
    responses["500"] = c.post(_calc_url(srv), json={"patient_id": "P1", "values": {}}, headers=h)
    for status, r in responses.items():
        assert str(r.status_code) == status, (status, r.text)
        for k, v in SECURITY_HEADERS.items():
            assert r.headers.get(k) == v, (status, k)
    assert "a bug" not in responses["500"].text


# ---- 2, 11, 12: DICOM header text, lying zips --------------------------------------------------

def _two_series_zip(ct: Path, folder: Path) -> bytes:
    from gastrorad.synth.dicom_writer import write_ct_series
    img = sitk.ReadImage(str(ct))
    files = write_ct_series(img, folder / "a", patient_id="Smith^John", series_key="v",
                            description="Smith^John venous")
    files += write_ct_series(img[:, :, :4], folder / "b", patient_id="Smith^John", series_key="w",
                             description="Smith^John arterial")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            z.write(f, f"{f.parent.name}/{f.name}")
    return buf.getvalue()


def test_two_series_zip_quotes_no_dicom_header_and_names_the_image_field(srv, study, tmp_path):
    import pydicom
    _, data = study
    values, row = _patient(data)
    payload = _two_series_zip(data / row.image, tmp_path)
    uids = {str(pydicom.dcmread(p).SeriesInstanceUID) for p in tmp_path.rglob("*.dcm")}
    st = _image_job(srv, {"image_venous": ("series.zip", payload),
                          "mask_venous": ("m.nii.gz", (data / row["mask"]).read_bytes())}, values)
    assert st["status"] == "failed"
    text = json.dumps(st["problems"])
    assert "Smith" not in text and not any(u in text for u in uids), text
    p = st["problems"][0]
    assert p["file"] == "image_venous" and "2 image series" in p["reason"] and "slices" in p["reason"], p
    stored = srv["store"].job(st["job_id"]).problems
    assert "Smith" not in stored and not any(u in stored for u in uids)


def _lying_zip(n: int = 5000, claimed: int = 100) -> bytes:
    """A stored (uncompressed) entry whose local and central headers claim ``claimed`` bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("series/slice.dcm", b"D" * n)
    raw = bytearray(buf.getvalue())
    local = raw.find(b"PK\x03\x04")
    struct.pack_into("<II", raw, local + 18, claimed, claimed)         # compressed, uncompressed sizes
    central = raw.find(b"PK\x01\x02")
    struct.pack_into("<II", raw, central + 20, claimed, claimed)
    return bytes(raw)


def test_zip_whose_headers_understate_its_sizes_is_refused_by_name(srv, study, tmp_path):
    from gastrorad.serve.archive import safe_extract
    with pytest.raises(InputError, match="image_venous") as exc:
        (tmp_path / "z.zip").write_bytes(_lying_zip())
        safe_extract(tmp_path / "z.zip", tmp_path / "out", field="image_venous", max_total=10**9, max_ratio=100,
                     max_entries=100)
    assert "damaged" in exc.value.problems[0].reason
    _, data = study
    values, row = _patient(data)
    st = _image_job(srv, {"image_venous": ("series.zip", _lying_zip()),
                          "mask_venous": ("m.nii.gz", (data / row["mask"]).read_bytes())}, values)
    assert st["status"] == "failed" and st["stage"] == "refused", st
    assert st["problems"][0]["file"].startswith("image_venous") and "internal error" not in json.dumps(st)


# ---- 5, 6: study IDs that are math text or spreadsheet formulas --------------------------------

@pytest.mark.parametrize("pid", ["P$}$", "P$x$"])
def test_study_id_is_drawn_literally_in_the_summary(srv, study, pid):
    _, data = study
    values, _ = _patient(data)
    r = srv["client"].post(_calc_url(srv), json={"patient_id": pid, "values": values}, headers=srv["alice"])
    assert r.status_code == 200, r.text
    png = srv["client"].get(f"/api/v1/jobs/{r.json()['job_id']}/summary.png", headers=srv["alice"])
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"


def test_formula_like_study_id_is_neutralised_in_predictions_csv(srv, study):
    _, data = study
    values, row = _patient(data)
    evil = "=cmd|' -C calc'!A0"
    st = _image_job(srv, {"image_venous": ("ct.nii.gz", (data / row.image).read_bytes()),
                          "mask_venous": ("m.nii.gz", (data / row["mask"]).read_bytes())}, values, pid=evil)
    assert st["status"] == "done", st["problems"]
    csv = srv["client"].get(f"/api/v1/jobs/{st['job_id']}/predictions.csv", headers=srv["alice"]).text
    first_cells = [line.split(",")[0] for line in csv.splitlines()[1:]]
    assert first_cells and all(c.strip('"').startswith("'=") for c in first_cells), first_cells
    assert st["result"]["patient_id"] == evil  # the JSON keeps the ID as typed


# ---- 3, 4: killed servers, two servers ----------------------------------------------------------

def test_restart_removes_a_killed_jobs_uploads_and_work(study, tmp_path):
    bundle, _ = study
    settings = _settings(tmp_path / "state")
    store = Store(settings.db_url)
    jid = store.new_job("image", "m", "h", "u", "P1", status="running")  # killed while it ran
    done = store.new_job("image", "m", "h", "u", "P2")
    store.update_job(done, status="done", result={"models": {}})
    for j in (jid, done):
        for sub in ("uploads", "work", "result"):
            (settings.jobs_dir / j / sub).mkdir(parents=True)
            (settings.jobs_dir / j / sub / "ct.nii.gz").write_bytes(b"CT")
    (settings.jobs_dir / "orphan" / "uploads").mkdir(parents=True)  # a folder without a row
    with TestClient(create_app([bundle], settings)):
        for j in (jid, done):
            assert not (settings.jobs_dir / j / "uploads").exists() and not (settings.jobs_dir / j / "work").exists()
        assert (settings.jobs_dir / done / "result" / "ct.nii.gz").exists()  # results are kept
        assert not (settings.jobs_dir / "orphan").exists()
        assert store.job(jid).status == "failed"


def test_one_server_per_state_folder(study, tmp_path):
    import os
    bundle, _ = study
    settings = _settings(tmp_path / "state")
    with TestClient(create_app([bundle], settings)):
        with pytest.raises(InputError, match=f"PID {os.getpid()}"):
            create_app([bundle], settings)
    with TestClient(create_app([bundle], settings)) as c:  # the first one stopped: the folder is free
        assert c.get("/api/v1/health").status_code == 200


# ---- 13, 14: audit of refusals; an unwritable jobs folder ----------------------------------------

def test_every_refused_request_has_an_audit_row(srv):
    c, store = srv["client"], srv["store"]
    n = len(store.audit_rows())
    r = c.post(f"/api/v1/models/{srv['model']['id']}/jobs", headers=srv["alice"],
               data={"patient_id": "P1"}, files={"imag_venous": ("ct.nii.gz", b"x")})
    assert r.status_code == 422
    assert c.get("/api/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    rows = store.audit_rows()[n:]
    assert [(a.token_name, a.action) for a in rows] == [("alice", "image_job"), ("-", "models")], rows
    assert rows[0].outcome.startswith("refused 422") and "unexpected file field" in rows[0].outcome
    assert rows[1].outcome.startswith("refused 401")


def test_unwritable_jobs_folder_fails_the_job_and_frees_its_slot(study, tmp_path):
    bundle, data = study
    settings = _settings(tmp_path / "state", queue_limit=1)
    settings.state_dir.mkdir(parents=True)
    settings.jobs_dir.write_text("not a folder")  # every job folder write fails (as a full or read-only disk)
    store = Store(settings.db_url)
    h = _auth(store.create_token("u"))
    values, row = _patient(data)
    with TestClient(create_app([bundle], settings)) as c:
        mid = c.get("/api/v1/models", headers=h).json()[0]["id"]
        for _ in range(2):  # the second would get 429 if the first still held the only slot
            r = c.post(f"/api/v1/models/{mid}/jobs", headers=h, data={"patient_id": PID, "clinical": json.dumps(values)},
                       files={"image_venous": ("ct.nii.gz", (data / row.image).read_bytes())})
            assert r.status_code == 503 and "operator" in r.json()["detail"], r.text
        assert store.active_jobs() == 0
        with store.session() as s:
            jobs = s.query(Job).all()
        assert {j.status for j in jobs} == {"failed"} and "cannot store" in jobs[0].problems


# ---- operator tools ------------------------------------------------------------------------------

def test_list_and_revoke_tokens_from_the_cli(study, tmp_path):
    from typer.testing import CliRunner

    from gastrorad.cli import app
    bundle, _ = study
    state = tmp_path / "state"
    run = CliRunner().invoke
    out = run(app, ["serve", "--state", str(state), "--create-token", "ward7"])
    assert out.exit_code == 0, out.output
    token = out.output.strip().splitlines()[-1]
    assert run(app, ["serve", "--state", str(state), "--create-token", "radiology"]).exit_code == 0
    out = run(app, ["serve", "--state", str(state), "--list-tokens"])
    assert "ward7" in out.output and "radiology" in out.output and token not in out.output
    settings = _settings(state)
    with TestClient(create_app([bundle], settings)) as c:
        assert c.get("/api/v1/models", headers=_auth(token)).status_code == 200
        out = run(app, ["serve", "--state", str(state), "--revoke-token", "ward7"])
        assert out.exit_code == 0 and "revoked" in out.output
        assert c.get("/api/v1/models", headers=_auth(token)).status_code == 401
    out = run(app, ["serve", "--state", str(state), "--revoke-token", "nobody"])
    assert out.exit_code == 1 and "radiology" in out.output


def test_query_string_token_never_reaches_the_access_log():
    import logging.config
    stream = io.StringIO()
    cfg = access_log_config()
    cfg["handlers"]["access"] = {"class": "logging.StreamHandler", "stream": stream, "formatter": "access"}
    logging.config.dictConfig(cfg)
    try:
        logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET",
                                                 "/api/v1/models?token=SECRET123", "1.1", 401)
    finally:
        logging.getLogger("uvicorn.access").handlers.clear()
    line = stream.getvalue()
    assert "/api/v1/models?<redacted>" in line and "SECRET123" not in line
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, "%s", ("a", "GET", "/x?k=v", "1.1", 200), None)
    assert RedactQuery().filter(record) and record.args[2] == "/x?<redacted>"


def test_long_inputs_are_cut_in_422_messages(srv):
    c, h = srv["client"], srv["alice"]
    r = c.post(_calc_url(srv), json={"patient_id": "P" * 50_000, "values": {}}, headers=h)
    assert r.status_code == 422 and len(r.content) < 3_000, len(r.content)
    r = c.post(_calc_url(srv), json={"patient_id": "P1", "values": {"v" * 50_000: 1}}, headers=h)
    assert r.status_code == 422 and len(r.content) < 5_000, len(r.content)
    r = c.post(f"/api/v1/models/{srv['model']['id']}/jobs", headers=h,
               data={"patient_id": PID, "clinical": json.dumps({"k" * 60_000: 1})})
    assert r.status_code == 422 and len(r.content) < 5_000, len(r.content)


def test_retention_expires_old_results(study, tmp_path):
    bundle, _ = study
    settings = _settings(tmp_path / "state", retention_days=30)
    store = Store(settings.db_url)
    h = _auth(store.create_token("u"))
    old, recent = store.new_job("image", "m", "h", "u", "P1"), store.new_job("image", "m", "h", "u", "P2")
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    store.update_job(old, status="done", result={"models": {}}, finished=now - dt.timedelta(days=31))
    store.update_job(recent, status="done", result={"models": {}}, finished=now - dt.timedelta(days=29))
    for j in (old, recent):
        (settings.jobs_dir / j / "result").mkdir(parents=True)
    with TestClient(create_app([bundle], settings)) as c:
        st = c.get(f"/api/v1/jobs/{old}", headers=h).json()
        assert st["status"] == "expired" and st["result"] is None and st["patient_id"] == ""
        assert not (settings.jobs_dir / old).exists()
        assert c.get(f"/api/v1/jobs/{recent}", headers=h).json()["status"] == "done"
        assert (settings.jobs_dir / recent / "result").exists()


def test_guard_logs_no_body(caplog):
    """A 500 is logged with the method and path only: no request body (no patient data) in the log."""
    class Tokens:
        def token_name(self, token):
            return "alice"

        def audit(self, *a, **k):
            pass

    async def app(scope, receive, send):
        await receive()
        raise RuntimeError("boom")
    guard = Guard(app, store=Tokens(), upload_limit=10**6, json_limit=64_000, upload_paths=lambda p: False)
    sent = []

    async def receive():
        return {"type": "http.request", "body": b'{"patient_id": "Doe^Jane"}', "more_body": False}

    async def send(m):
        sent.append(m)
    scope = {"type": "http", "method": "POST", "path": "/api/v1/models/x/calculate",
             "headers": [(b"authorization", b"Bearer t"), (b"content-type", b"application/json")]}
    with caplog.at_level(logging.ERROR, logger="gastrorad.serve"):
        asyncio.run(guard(scope, receive, send))
    assert sent[0]["status"] == 500 and "Doe" not in caplog.text
    assert dict(sent[0]["headers"])[b"x-frame-options"] == b"DENY"

