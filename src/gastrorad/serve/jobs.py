"""Image and batch jobs: uploads checked and laid out as a patients file, then scored by
:func:`gastrorad.bundle.predict.predict_patients` (the code ``gastrorad predict`` runs) in a
bounded pool of worker threads. Each job has a folder under ``<state>/jobs/<id>/``:
``uploads/`` (deleted when the job ends unless retention is on), ``work/`` (predict's working
copies and patch cache, always deleted) and ``result/`` (predictions.csv, Grad-CAM PNG).

Problems are reported with the upload's field name (``image_venous``, ``archive``...) in
place of the server's file paths, which never leave the server.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from gastrorad.errors import InputError, Problem
from gastrorad.io.atomic import atomic_write_text
from gastrorad.io.csv_safe import download_csv
from gastrorad.io.safe_paths import id_problem
from gastrorad.serve.archive import safe_extract
from gastrorad.serve.registry import ServedModel
from gastrorad.serve.settings import ServeSettings
from gastrorad.serve.store import Store

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")
_DICOM_UID = re.compile(r"\b\d+(?:\.\d+){4,}\b")  # a UID quoted by a lower layer never leaves the server
_NON_CT = {"MR", "PT", "NM", "US", "CR", "DX", "MG", "XA", "RF", "OT", "SC"}


def upload_suffix(name: str) -> str:
    """The suffix that tells what an upload is (``.nii.gz``, ``.zip``, ``.dcm``...), or ""."""
    low = name.lower()
    for s in (".nii.gz", *IMAGE_SUFFIXES, ".zip", ".dcm", ".csv"):
        if low.endswith(s):
            return s
    return ""


@dataclass
class Upload:
    field: str        # form field, e.g. image_venous
    filename: str     # as sent by the browser (only its suffix is used)
    path: Path        # where it was saved


@dataclass
class JobInputs:
    patient_id: str = ""
    clinical: dict = field(default_factory=dict)
    uploads: dict[str, Upload] = field(default_factory=dict)
    boxes: dict[str, str] = field(default_factory=dict)       # phase -> bbox text
    selectors: dict[str, str] = field(default_factory=dict)   # phase -> mask label / ROI name


def check_ct_series(folder: Path, field_name: str) -> None:
    """A DICOM series upload must be one CT series: the locked model was trained on CT Hounsfield units.

    Several series are refused by position and slice count only: a SeriesDescription can
    carry a patient's name and UIDs identify the examination, so no header text is quoted.
    """
    import pydicom
    seen = False
    series: dict[str, int] = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
        except Exception:
            continue
        modality = str(ds.get("Modality", "")).upper()
        if modality in ("SEG", "RTSTRUCT"):
            continue
        seen = True
        if modality != "CT":
            raise InputError(Problem(field_name, f"the DICOM series is modality '{modality or 'unknown'}', not CT: "
                                     "the locked model was trained on CT (Hounsfield units)"))
        uid = str(ds.get("SeriesInstanceUID", ""))
        series[uid] = series.get(uid, 0) + 1
    if not seen:
        raise InputError(Problem(field_name, "the zip archive holds no readable DICOM image"))
    if len(series) > 1:
        counts = ", ".join(f"series {i + 1}: {n} slices" for i, n in enumerate(series.values()))
        raise InputError(Problem(field_name, f"the zip archive holds {len(series)} image series ({counts}, in "
                                 "archive order); zip one series per image field"))


class JobRunner:
    def __init__(self, store: Store, settings: ServeSettings):
        self.store, self.settings = store, settings
        self.pool = ThreadPoolExecutor(max_workers=max(1, settings.workers), thread_name_prefix="gastrorad-job")
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def shutdown(self) -> None:
        self._stop.set()
        self.pool.shutdown(wait=True, cancel_futures=True)

    # ---- folders of ended jobs -------------------------------------------------------------
    def sweep(self) -> list[str]:
        """Remove what ended jobs must not keep: ``work/`` always, ``uploads/`` unless retention of
        uploads is on; a job folder with no job row at all goes whole. Run at start, after
        :meth:`Store.fail_interrupted`, so a server killed during a job leaves no CT on disk."""
        root = self.settings.jobs_dir
        if not root.is_dir():
            return []
        ended, active = self.store.ended_jobs(), None
        cleaned = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if folder.name not in ended:
                active = active if active is not None else self.store.active_job_ids()
                if folder.name in active:
                    continue
                shutil.rmtree(folder, ignore_errors=True)  # no row: a folder nobody can ask for
                cleaned.append(folder.name)
                continue
            parts = [folder / "work"] + ([] if self.settings.retain_uploads else [folder / "uploads"])
            if any(p.exists() for p in parts):
                for p in parts:
                    shutil.rmtree(p, ignore_errors=True)
                cleaned.append(folder.name)
        return cleaned

    def expire(self) -> list[str]:
        """Retention: jobs finished more than ``retention_days`` ago lose their result (row and folder)."""
        import datetime as dt
        days = self.settings.retention_days
        if days is None:
            return []
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        gone = self.store.expire(now - dt.timedelta(days=days))
        for jid in gone:
            shutil.rmtree(self.job_dir(jid), ignore_errors=True)
        return gone

    def start_retention(self, every_s: float = 600.0) -> None:
        """Expire old results now and then every ``every_s`` seconds, in a daemon thread."""
        if self.settings.retention_days is None:
            return

        def loop():
            while True:
                try:
                    self.expire()
                except Exception:  # a database hiccup must not end the loop
                    import logging
                    logging.getLogger("gastrorad.serve").exception("retention sweep failed")
                if self._stop.wait(every_s):
                    return
        threading.Thread(target=loop, name="gastrorad-retention", daemon=True).start()

    def job_dir(self, jid: str) -> Path:
        return self.settings.jobs_dir / jid

    def _limits(self) -> dict:
        s = self.settings
        return {"max_total": int(s.zip_max_total_mb * 1e6), "max_ratio": s.zip_max_ratio,
                "max_entries": s.zip_max_entries}

    # ---- laying out the inputs -------------------------------------------------------------
    def _image_ref(self, up: Upload, dest: Path) -> str:
        suffix = upload_suffix(up.filename)
        if suffix == ".zip":
            folder = dest / f"{up.field}_series"
            safe_extract(up.path, folder, field=up.field, **self._limits())
            check_ct_series(folder, up.field)
            return str(folder)
        if suffix in IMAGE_SUFFIXES:
            return str(up.path)
        raise InputError(Problem(up.field, f"'{suffix or up.filename[-10:]}' is not an image this server reads: send a "
                                 "NIfTI/NRRD/MHA file or a zipped DICOM series (.zip)"))

    def _mask_ref(self, up: Upload, selector: str) -> str:
        suffix = upload_suffix(up.filename)
        if suffix not in (*IMAGE_SUFFIXES, ".dcm"):
            raise InputError(Problem(up.field, "a mask is a label image (NIfTI/NRRD/MHA) or a DICOM SEG/RTSTRUCT "
                                     "file (.dcm)"))
        return str(up.path) + (f"#{selector}" if selector else "")

    def image_patients_file(self, model: ServedModel, inputs: JobInputs, folder: Path) -> Path:
        problems = []
        phases = model.info["phases"]
        rows = []
        for ph in phases:
            img = inputs.uploads.get(f"image_{ph}")
            if img is None:
                problems.append(Problem(f"image_{ph}", f"missing: the model needs a {ph}-phase CT"))
                continue
            mask, box = inputs.uploads.get(f"mask_{ph}"), inputs.boxes.get(ph, "").strip()
            if mask is None and not box:
                problems.append(Problem(f"mask_{ph}", "missing: give a mask file or a box (bbox)"))
                continue
            try:
                row = {"patient_id": inputs.patient_id, "image": self._image_ref(img, folder), "phase": ph,
                       "mask": self._mask_ref(mask, inputs.selectors.get(ph, "")) if mask else "",
                       "bbox": box}
            except InputError as exc:
                problems.extend(exc.problems)
                continue
            rows.append(row)
        if problems:
            raise InputError(problems)
        table = pd.DataFrame(rows)
        for k, v in inputs.clinical.items():
            table[k] = v
        path = folder / "patients.csv"
        table.to_csv(path, index=False)
        return path

    def batch_patients_file(self, model: ServedModel, inputs: JobInputs, folder: Path) -> Path:
        """The user's patients CSV with its image/mask paths checked to stay inside the archive."""
        from gastrorad.data.tables import read_table
        root = folder / "archive"
        arch = inputs.uploads.get("archive")
        if arch is not None:
            safe_extract(arch.path, root, field="archive", **self._limits())
        else:
            root.mkdir(parents=True, exist_ok=True)
        table = read_table(inputs.uploads["patients"].path)
        problems = []
        if "patient_id" in table:
            for i, pid in enumerate(table.patient_id):
                why = id_problem(pid)
                if why:
                    problems.append(Problem("patients", why, row=i + 2, column="patient_id"))
        for col in ("image", "mask"):
            if col not in table:
                continue
            for i, ref in enumerate(table[col]):
                if ref is None or (isinstance(ref, float) and pd.isna(ref)) or not str(ref).strip():
                    continue
                head = str(ref).strip().partition("#")[0]
                p = Path(head)
                if p.is_absolute() or ".." in p.parts:
                    problems.append(Problem("patients", "paths must be relative to the archive's root, without '..'",
                                            row=i + 2, column=col))
                    continue
                target = (root / p).resolve()
                if root.resolve() not in target.parents:
                    problems.append(Problem("patients", "path leaves the archive", row=i + 2, column=col))
                elif not target.exists():
                    problems.append(Problem("patients", f"'{head[:120]}' is not in the archive", row=i + 2, column=col))
                elif col == "image" and target.is_dir():
                    try:
                        check_ct_series(target, f"archive:{head[:120]}")
                    except InputError as exc:
                        problems.extend(Problem("patients", q.reason, row=i + 2, column=col) for q in exc.problems)
        if problems:
            raise InputError(problems)
        path = root / "patients.csv"
        shutil.copyfile(inputs.uploads["patients"].path, path)
        return path

    # ---- running ---------------------------------------------------------------------------
    def submit(self, jid: str, kind: str, model: ServedModel, inputs: JobInputs, token_name: str,
               hashes: dict) -> None:
        self.pool.submit(self._run, jid, kind, model, inputs, token_name, hashes)

    def _public(self, problems: list[Problem], jid: str, inputs: JobInputs) -> list[dict]:
        """Problems with server paths replaced by the upload field names."""
        folder = str(self.job_dir(jid).resolve())
        names = {}
        for u in inputs.uploads.values():
            label = f"{u.field} ({Path(u.filename).name[:80]})"
            names[str((u.path.parent / f"{u.field}_series").resolve())] = label  # an unpacked DICOM zip
            names[str(u.path.resolve())] = label
        names = dict(sorted(names.items(), key=lambda kv: -len(kv[0])))  # longest path first
        out = []
        for p in problems:
            text = p.file or ""
            for path, label in names.items():
                text = text.replace(path, label)
            if folder in text or text.startswith("/"):
                rest = text.split(folder, 1)[-1].lstrip("/")
                rest = rest.replace("uploads/archive/", "archive:").replace("uploads/", "")
                text = rest if not rest.startswith("/") else Path(rest).name
            reason = p.reason
            for path, label in names.items():
                reason = reason.replace(path, label)
            reason = _DICOM_UID.sub("<UID>", reason.replace(folder + "/", ""))
            named = [label for label in names.values() if label in reason]
            row, column = p.row, p.column
            if inputs.patient_id and (text == "patients.csv" or named):  # image job: our CSV means nothing to the user
                by_column = {"image": "image_", "mask": "mask_", "bbox": "mask_"}.get(column or "")
                fields = [u.field for u in inputs.uploads.values() if by_column and u.field.startswith(by_column)]
                text = named[0] if named else (fields[0] if len(fields) == 1 else
                                               "clinical" if not by_column else "images")
                row, column = None, column if column not in ("image", "mask", "bbox", "phase") else None
            out.append({"file": text, "row": row, "column": column, "reason": reason, "severity": p.severity})
        return out

    def _run(self, jid: str, kind: str, model: ServedModel, inputs: JobInputs, token_name: str, hashes: dict):
        folder = self.job_dir(jid)
        uploads, work, result_dir = folder / "uploads", folder / "work", folder / "result"
        try:
            self.store.update_job(jid, status="running", stage="checking the uploads", progress=0.02)
            final = {"status": "done", "stage": "done", "progress": 1.0,
                     "result": self._score(jid, kind, model, inputs, uploads, work, result_dir)}
            outcome = "done"
        except InputError as exc:
            final = {"status": "failed", "stage": "refused", "problems": self._public(exc.problems, jid, inputs)}
            outcome = f"refused: {len(exc.problems)} problem(s)"
        except Exception as exc:  # a bug or a storage fault: the job fails, the server goes on
            import logging
            logging.getLogger("gastrorad.serve").exception("job %s failed", jid)
            final = {"status": "failed", "stage": "error",
                     "problems": [{"file": "", "row": None, "column": None, "severity": "error",
                                   "reason": f"internal error ({type(exc).__name__}); see the server log"}]}
            outcome = f"error: {type(exc).__name__}"
        # the images are gone before the job says it has ended
        if not self.settings.retain_uploads:
            shutil.rmtree(uploads, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        self.store.update_job(jid, **final)
        self.store.audit(token_name, f"{kind}_job", model=model.id, bundle_hash=model.bundle_hash,
                         input_hashes=hashes, job_id=jid, outcome=outcome)

    def _score(self, jid: str, kind: str, model: ServedModel, inputs: JobInputs, uploads: Path, work: Path,
               result_dir: Path) -> dict:
        from gastrorad.bundle.predict import predict_patients
        from gastrorad.serve.calculator import as_result, clinical_frame, range_flags

        if kind == "image":
            patients = self.image_patients_file(model, inputs, uploads)
        else:
            patients = self.batch_patients_file(model, inputs, uploads)
        self.store.update_job(jid, stage="cutting patches", progress=0.1)

        def progress(done, total):
            self.store.update_job(jid, progress=0.1 + 0.6 * done / max(total, 1),
                                  stage=f"cutting patches ({done}/{total})")
        res = predict_patients(model.folder, patients, work, gradcam=kind == "image", progress=progress)
        self.store.update_job(jid, stage="writing the result", progress=0.95)
        result_dir.mkdir(parents=True, exist_ok=True)
        preds = res.predictions
        atomic_write_text(result_dir / "predictions.csv", download_csv(preds))
        if kind != "image":
            return {"patients": int(preds.patient_id.nunique()), "rows": int(len(preds)),
                    "models": sorted(preds.model.unique().tolist())}
        result = as_result(model, preds, inputs.patient_id)
        clin = clinical_frame(model, inputs.patient_id, inputs.clinical)
        result["flags"] = range_flags(model, clin, result["signature"])
        cams = sorted((work / "explain").rglob("*.png")) if (work / "explain").exists() else []
        if cams:
            shutil.copyfile(cams[0], result_dir / "gradcam.png")
        result["gradcam"] = bool(cams)
        result["values"] = inputs.clinical
        return result
