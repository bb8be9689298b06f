"""The FastAPI application: REST API under ``/api/v1`` (OpenAPI schema at
``/api/v1/openapi.json``), the page at ``/``.

Every endpoint but ``/api/v1/health``, the page shell and its static files needs
``Authorization: Bearer <token>`` (tokens made by ``gastrorad serve --create-token NAME``),
checked by :class:`gastrorad.serve.security.Guard` before any body is read. One server per
state folder: a second one on the same folder stops at start, naming the PID of the first.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import weakref
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from gastrorad import __version__
from gastrorad.errors import InputError, Problem
from gastrorad.io.hashing import file_hash
from gastrorad.io.lock import ProcessLock
from gastrorad.io.safe_paths import id_problem
from gastrorad.serve.calculator import calculate, clinical_frame
from gastrorad.serve.figures import nomogram_png, summary_png
from gastrorad.serve.jobs import JobInputs, JobRunner, Upload, upload_suffix
from gastrorad.serve.registry import ServedModel, load_models
from gastrorad.serve.security import MAX_ECHO, Guard, JSONRefused, shorten, strict_json
from gastrorad.serve.settings import ServeSettings
from gastrorad.serve.store import Store, read_json

PAGE = Path(__file__).parent / "page"
STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
API = "/api/v1"


class CalculateRequest(BaseModel):
    patient_id: str = Field("patient", description="Study ID as the user types it (no name, no DICOM identifier).",
                            max_length=128)
    values: dict[str, str | float | int | None] = Field(
        default_factory=dict, description="Clinical variable -> value (numbers, or one of the allowed levels).")


def _problems_json(problems) -> list[dict]:
    """Problems as JSON, with the user's own text (field names, values) cut to a readable length."""
    return [{"file": shorten(p.file), "row": p.row, "column": shorten(p.column) if p.column else p.column,
             "reason": shorten(p.reason, 1000), "severity": p.severity} for p in problems]


_UPLOAD_PATH = re.compile(rf"^{API}/models/[^/]+/(jobs|batch)$")


class _GuardedApp(FastAPI):
    """FastAPI whose whole middleware stack, Starlette's 500 handler included, runs inside
    :class:`Guard`, so every response carries the security headers."""

    guard_options: dict = {}

    def build_middleware_stack(self):
        return Guard(super().build_middleware_stack(), **self.guard_options)


def parse_clinical(text: str, source: str = "clinical") -> dict:
    """The ``clinical`` form field of an image job: a flat JSON object of finite numbers,
    strings or nulls (InputError naming the field otherwise)."""
    if len(text) > 64_000:
        raise InputError(Problem(source, f"{len(text)} characters; a clinical record is at most 64,000"))
    try:
        values = strict_json(text or "{}")
    except JSONRefused as exc:
        raise InputError(Problem(source, str(exc))) from None
    except ValueError:
        raise InputError(Problem(source, "must be a JSON object: variable -> value")) from None
    if not isinstance(values, dict):
        raise InputError(Problem(source, "must be a JSON object: variable -> value"))
    bad = [k for k, v in values.items() if not (v is None or isinstance(v, (str, int, float)))]
    if bad:
        raise InputError([Problem(source, "a value must be a number, a text or null, not a list or an object",
                                  column=k) for k in bad])
    return values


def _warm_up() -> None:
    import gastrorad.dl.features  # noqa: F401
    import gastrorad.dl.train  # noqa: F401
    import gastrorad.preprocess  # noqa: F401


def create_app(bundles, settings: ServeSettings | None = None) -> FastAPI:
    """The ASGI app serving ``bundles`` (folders); state in ``settings.state_dir``."""
    settings = settings or ServeSettings()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    models: dict[str, ServedModel] = load_models(bundles)
    lock = ProcessLock(settings.state_dir / "serve.lock")
    holder = lock.acquire()
    if holder is not None:
        raise InputError(Problem(str(settings.state_dir), f"another gastrorad serve (PID {holder}) uses this state "
                                 "folder; stop it first, or give this server its own folder (--state)"))
    try:
        store = Store(settings.db_url)
        store.fail_interrupted()
        runner = JobRunner(store, settings)
        runner.sweep()  # a killed server's uploads and working files go now
        runner.expire()
    except BaseException:
        lock.release()
        raise

    @asynccontextmanager
    async def lifespan(app):
        import threading

        import torch
        torch.set_num_threads(max(1, settings.threads_per_job))
        # the first image job would otherwise pay for importing the imaging and network code
        threading.Thread(target=_warm_up, daemon=True).start()
        runner.start_retention()
        yield
        runner.shutdown()
        lock.release()

    app = _GuardedApp(title="gastrorad serve", version=__version__, lifespan=lifespan, docs_url=None,
                      redoc_url=None, openapi_url=None, description=__doc__)
    app.guard_options = {"store": store, "upload_limit": int(settings.max_upload_mb * 1e6),
                         "json_limit": int(settings.max_json_kb * 1e3), "upload_paths": _UPLOAD_PATH.match}
    app.state.models, app.state.store, app.state.runner, app.state.settings = models, store, runner, settings
    app.state.lock = lock
    weakref.finalize(app, lock.release)  # an app dropped without its lifespan still frees the folder
    bearer = HTTPBearer(auto_error=False)

    def user(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
        """The token's name, found by the Guard before the body was read (the bearer scheme
        is declared here for the OpenAPI schema)."""
        name = getattr(request.state, "user", None)
        if name is None:
            raise HTTPException(401, "a valid API token is required (Authorization: Bearer <token>; "
                                     "create one with `gastrorad serve --create-token NAME`)",
                                headers={"WWW-Authenticate": "Bearer"})
        return name

    def get_model(mid: str) -> ServedModel:
        if mid not in models:
            raise HTTPException(404, f"no model '{mid}' on this server; GET {API}/models lists them")
        return models[mid]

    def get_job(jid: str, who: str):
        job = store.job(jid)
        if job is None or job.token_name != who:  # another user's job is as good as absent
            raise HTTPException(404, f"no job '{jid}'")
        return job

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError):
        problems = _problems_json(exc.problems)
        return JSONResponse({"detail": "; ".join(f"{p['column'] or p['file']}: {p['reason']}" for p in problems[:5]),
                             "problems": problems}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        """FastAPI's 422, with the offending input cut short (a 1 MB field is not echoed back)."""
        errors = []
        for e in exc.errors():
            e = {k: v for k, v in e.items() if k in ("type", "loc", "msg", "input")}
            if "input" in e:
                e["input"] = shorten(json.dumps(e["input"], default=str), MAX_ECHO)
            e["loc"] = [shorten(x, 80) if isinstance(x, str) else x for x in e.get("loc", [])]
            errors.append(e)
        return JSONResponse({"detail": errors}, status_code=422)

    # ---- open endpoints --------------------------------------------------------------------
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def page():
        return FileResponse(PAGE / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        if name not in STATIC:
            raise HTTPException(404, "not found")
        return FileResponse(PAGE / name, media_type=STATIC[name])

    @app.get(f"{API}/health", tags=["server"])
    def health():
        """Liveness: no token needed, no model detail given."""
        return {"status": "ok", "version": __version__, "models": len(models)}

    # ---- token endpoints -------------------------------------------------------------------
    @app.get(f"{API}/openapi.json", tags=["server"], include_in_schema=False)
    def openapi(who: str = Depends(user)):
        return app.openapi()

    @app.get(f"{API}/models", tags=["models"])
    def list_models(who: str = Depends(user)):
        """The served models with their cards, inputs (types, levels, training ranges) and cut-offs."""
        return [m.summary() for m in models.values()]

    @app.get(f"{API}/models/{{mid}}", tags=["models"])
    def model_detail(mid: str, who: str = Depends(user)):
        return get_model(mid).summary()

    @app.get(f"{API}/models/{{mid}}/nomogram.png", tags=["models"], response_class=Response)
    def model_nomogram(mid: str, who: str = Depends(user)):
        png = nomogram_png(get_model(mid), None)
        if png is None:
            raise HTTPException(404, "this model has no nomogram")
        return Response(png, media_type="image/png")

    @app.post(f"{API}/models/{{mid}}/calculate", tags=["predict"])
    def calculate_endpoint(mid: str, body: CalculateRequest, request: Request, who: str = Depends(user)):
        """Nomogram calculator: the scores of the models that need no image, from clinical values
        alone (the numbers `gastrorad predict` gives), flags for values outside the training
        range, and the nomogram points of the clinical axes."""
        model = get_model(mid)
        digest = hashlib.sha256(json.dumps(body.values, sort_keys=True, default=str).encode()).hexdigest()
        try:
            result, _ = calculate(model, body.values, body.patient_id)
        except InputError as exc:
            store.audit(who, "calculate", model=model.id, bundle_hash=model.bundle_hash,
                        input_hashes={"values": digest}, outcome=f"refused: {len(exc.problems)} problem(s)")
            request.state.audited = True
            raise
        result["values"] = body.values
        jid = store.add_calculation(model.id, model.bundle_hash, who, body.patient_id, result, {"values": digest})
        return {"job_id": jid, **result}

    async def _save_uploads(form, jid: str, allowed) -> tuple[dict[str, Upload], dict[str, str]]:
        folder = runner.job_dir(jid) / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        uploads, hashes = {}, {}
        for key, value in form.multi_items():
            if not isinstance(value, UploadFile):
                continue
            if not allowed(key):
                raise InputError(Problem(key, "unexpected file field"))
            if key in uploads:
                raise InputError(Problem(key, "given twice"))
            dest = folder / f"{key}{upload_suffix(value.filename or '') or '.bin'}"
            with open(dest, "wb") as out:
                await run_in_threadpool(shutil.copyfileobj, value.file, out, 1 << 20)
            uploads[key] = Upload(key, value.filename or "", dest)
            hashes[key] = await run_in_threadpool(file_hash, dest)
        return uploads, hashes

    async def _save_or_fail(form, jid: str, allowed, check=None):
        """Save a job's uploads; on any failure the job is marked failed (its queue slot freed)
        with the reason, its folder removed, and the request refused."""
        try:
            uploads, hashes = await _save_uploads(form, jid, allowed)
            if check:
                check(uploads)
            return uploads, hashes
        except InputError as exc:
            await run_in_threadpool(_fail_job, jid, _problems_json(exc.problems))
            raise
        except OSError as exc:
            import logging
            logging.getLogger("gastrorad.serve").exception("job %s: cannot store the uploads", jid)
            reason = (f"the server cannot store the uploads ({exc.strerror or type(exc).__name__}); "
                      "tell the server's operator (its jobs folder must be writable)")
            await run_in_threadpool(_fail_job, jid, [{"file": "", "row": None, "column": None, "severity": "error",
                                                      "reason": reason}])
            raise HTTPException(503, reason) from None
        except BaseException:
            await run_in_threadpool(_fail_job, jid, [{"file": "", "row": None, "column": None, "severity": "error",
                                                      "reason": "internal error; see the server log"}])
            raise

    def _fail_job(jid: str, problems: list[dict]) -> None:
        shutil.rmtree(runner.job_dir(jid), ignore_errors=True)
        store.update_job(jid, status="failed", stage="refused", problems=problems)

    def _admit():
        if store.active_jobs() >= settings.queue_limit:
            raise HTTPException(429, f"{settings.queue_limit} jobs are queued or running; try again later",
                                headers={"Retry-After": "30"})

    image_fields = {
        "requestBody": {"content": {"multipart/form-data": {"schema": {"type": "object", "properties": {
            "patient_id": {"type": "string", "description": "Study ID typed by the user."},
            "clinical": {"type": "string", "description": "JSON object: clinical variable -> value."},
            "image_<phase>": {"type": "string", "format": "binary",
                              "description": "CT of each phase of the model: NIfTI/NRRD/MHA, or a zipped "
                                             "DICOM series."},
            "mask_<phase>": {"type": "string", "format": "binary",
                             "description": "ROI: label image (NIfTI...) or DICOM SEG/RTSTRUCT (.dcm)."},
            "mask_label_<phase>": {"type": "string", "description": "Label number, segment or RTSTRUCT ROI name."},
            "bbox_<phase>": {"type": "string", "description": "Box instead of a mask, as in a manifest's bbox column."},
        }, "required": ["patient_id"]}}}, "required": True}}

    @app.post(f"{API}/models/{{mid}}/jobs", tags=["predict"], status_code=202, openapi_extra=image_fields)
    async def image_job(mid: str, request: Request, who: str = Depends(user)):
        """Score one patient from images (+ clinical values) in the background: returns a job id;
        poll `GET /api/v1/jobs/{id}` for progress and the result (as `gastrorad predict`)."""
        model = get_model(mid)
        if not model.summary()["image_jobs"]:
            raise HTTPException(422, "this model (multi-lesion, time-series) takes batch jobs only")
        _admit()
        form = await request.form(max_files=2 * len(model.info["phases"]) + 2)
        pid = str(form.get("patient_id") or "").strip()
        why = id_problem(pid) if pid else "missing"
        if why:
            raise InputError(Problem("patient_id", why))
        clinical = parse_clinical(str(form.get("clinical") or "{}"))
        clinical_frame(model, pid, clinical)  # unknown variables and bad IDs refused before any upload is kept
        phases = model.info["phases"]
        names = {f"{k}_{ph}" for ph in phases for k in ("image", "mask")}
        jid = store.new_job("image", model.id, model.bundle_hash, who, pid)
        uploads, hashes = await _save_or_fail(form, jid, lambda k: k in names)
        inputs = JobInputs(pid, dict(clinical), uploads,
                           {ph: str(form.get(f"bbox_{ph}") or "") for ph in phases},
                           {ph: str(form.get(f"mask_label_{ph}") or "") for ph in phases})
        hashes["clinical"] = hashlib.sha256(json.dumps(clinical, sort_keys=True, default=str).encode()).hexdigest()
        store.update_job(jid, result=json.dumps({"values": clinical}))
        runner.submit(jid, "image", model, inputs, who, hashes)
        return {"job_id": jid, "status": "queued"}

    batch_fields = {"requestBody": {"content": {"multipart/form-data": {"schema": {"type": "object", "properties": {
        "patients": {"type": "string", "format": "binary",
                     "description": "Patients CSV as for `gastrorad predict` (paths relative to the archive's root)."},
        "archive": {"type": "string", "format": "binary", "description": "Zip of the images and masks."},
    }, "required": ["patients"]}}}, "required": True}}

    @app.post(f"{API}/models/{{mid}}/batch", tags=["predict"], status_code=202, openapi_extra=batch_fields)
    async def batch_job(mid: str, request: Request, who: str = Depends(user)):
        """A patients CSV plus a zip of their images: returns a job id; the predictions CSV is at
        `GET /api/v1/jobs/{id}/predictions.csv` when the job is done."""
        model = get_model(mid)
        _admit()
        form = await request.form(max_files=2)
        jid = store.new_job("batch", model.id, model.bundle_hash, who)

        def check(uploads):
            if "patients" not in uploads:
                raise InputError(Problem("patients", "missing: the patients CSV"))
            if not uploads["patients"].filename.lower().endswith(".csv"):
                raise InputError(Problem("patients", "must be a .csv file"))
        uploads, hashes = await _save_or_fail(form, jid, lambda k: k in ("patients", "archive"), check)
        runner.submit(jid, "batch", model, JobInputs(uploads=uploads), who, hashes)
        return {"job_id": jid, "status": "queued"}

    @app.get(f"{API}/jobs/{{jid}}", tags=["jobs"])
    def job_status(jid: str, who: str = Depends(user)):
        """Status (queued, running, done, failed), progress 0-1, stage, result or problems."""
        j = get_job(jid, who)
        return {"job_id": j.id, "kind": j.kind, "model": j.model, "bundle_sha256": j.bundle_hash,
                "patient_id": j.study_id, "status": j.status, "progress": j.progress, "stage": j.stage,
                "created": j.created.isoformat() + "Z",
                "finished": j.finished.isoformat() + "Z" if j.finished else None,
                "result": read_json(j.result, None) if j.status == "done" else None,
                "problems": read_json(j.problems, [])}

    def _done_job(jid: str, who: str):
        j = get_job(jid, who)
        if j.status != "done":
            raise HTTPException(409, f"job is {j.status}")
        return j

    def _result_file(jid: str, who: str, name: str, media: str, missing: str, **kw):
        _done_job(jid, who)
        path = runner.job_dir(jid) / "result" / name
        if not path.exists():
            raise HTTPException(404, missing)
        return FileResponse(path, media_type=media, **kw)

    @app.get(f"{API}/jobs/{{jid}}/predictions.csv", tags=["jobs"], response_class=Response)
    def job_predictions(jid: str, who: str = Depends(user)):
        """The predictions table of an image or batch job (the columns `gastrorad predict` writes)."""
        return _result_file(jid, who, "predictions.csv", "text/csv", "this job has no predictions file "
                            "(calculator results are in its JSON)", filename=f"predictions_{jid[:8]}.csv")

    @app.get(f"{API}/jobs/{{jid}}/gradcam.png", tags=["jobs"], response_class=Response)
    def job_gradcam(jid: str, who: str = Depends(user)):
        return _result_file(jid, who, "gradcam.png", "image/png", "no Grad-CAM for this job (the model has no "
                            "trained network, or no image)")

    @app.get(f"{API}/jobs/{{jid}}/nomogram.png", tags=["jobs"], response_class=Response)
    def job_nomogram(jid: str, who: str = Depends(user)):
        j = _done_job(jid, who)
        model = get_model(j.model) if j.model in models else None
        if model is None:
            raise HTTPException(410, "the job's model is no longer served")
        result = read_json(j.result, {})
        png = nomogram_png(model, (result.get("nomogram") or {}).get("points"))
        if png is None:
            raise HTTPException(404, "this model has no nomogram")
        return Response(png, media_type="image/png")

    @app.get(f"{API}/jobs/{{jid}}/summary.png", tags=["jobs"], response_class=Response)
    def job_summary(jid: str, who: str = Depends(user)):
        """The one-page PNG summary of a calculator or image job."""
        j = _done_job(jid, who)
        if j.kind == "batch":
            raise HTTPException(409, "a batch job's result is its predictions CSV")
        if j.model not in models:
            raise HTTPException(410, "the job's model is no longer served")
        result = read_json(j.result, None)
        if not isinstance(result, dict) or "models" not in result:
            raise HTTPException(409, "this job's stored result cannot be read; submit the job again")
        cam = runner.job_dir(jid) / "result" / "gradcam.png"
        png = summary_png(models[j.model], result, result.get("values", {}), kind=j.kind,
                          gradcam=cam if cam.exists() else None,
                          created=(j.finished or j.created).strftime("%Y-%m-%d %H:%M"))
        store.audit(who, "summary", model=j.model, bundle_hash=j.bundle_hash, job_id=jid, outcome="done")
        return Response(png, media_type="image/png",
                        headers={"Content-Disposition": f'attachment; filename="gastrorad_{jid[:8]}.png"'})

    return app
