"""The server's database: API tokens (hashed), jobs with their results, and the audit log.

SQLAlchemy, so SQLite (default, one file in the state folder) and PostgreSQL are the same
code. Nothing from a DICOM header is stored: a job holds the study ID the user typed, the
bundle's hash, SHA-256 digests of the uploaded files, the outcome and the numbers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import uuid

from sqlalchemy import DateTime, Float, Integer, String, Text, create_engine, delete, event, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker


class Base(DeclarativeBase):
    pass


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Token(Base):
    __tablename__ = "tokens"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))            # calculator | image | batch
    model: Mapped[str] = mapped_column(String(200))
    bundle_hash: Mapped[str] = mapped_column(String(64))
    token_name: Mapped[str] = mapped_column(String(100), index=True)
    study_id: Mapped[str] = mapped_column(String(200), default="")  # as typed by the user
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued | running | done | failed
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    stage: Mapped[str] = mapped_column(String(100), default="")
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)
    finished: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    result: Mapped[str] = mapped_column(Text, default="")    # JSON
    problems: Mapped[str] = mapped_column(Text, default="")  # JSON list of problems


class Audit(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)
    token_name: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(50))
    model: Mapped[str] = mapped_column(String(200), default="")
    bundle_hash: Mapped[str] = mapped_column(String(64), default="")
    input_hashes: Mapped[str] = mapped_column(Text, default="")  # JSON {field: sha256}
    job_id: Mapped[str] = mapped_column(String(36), default="")
    outcome: Mapped[str] = mapped_column(String(200), default="")


def _json(obj) -> str:
    """JSON text of ``obj`` with non-finite floats as null: a stored row must always read back."""
    from gastrorad.serve.security import finite
    return json.dumps(finite(obj), allow_nan=False, default=str)


def read_json(text: str | None, fallback):
    """A stored JSON column, or ``fallback`` when it is empty or unreadable (never raises)."""
    from gastrorad.serve.security import finite
    if not text:
        return fallback
    try:
        return finite(json.loads(text))
    except (ValueError, RecursionError):
        return fallback


def token_digest(token: str) -> str:
    """Tokens are 256-bit random strings, so an unsalted SHA-256 is enough to keep them unreadable at rest."""
    return hashlib.sha256(token.encode()).hexdigest()


class Store:
    """Thin access layer over the tables; every method opens its own short session."""

    def __init__(self, url: str):
        if url.startswith("sqlite:///"):
            from pathlib import Path
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        kw = {"connect_args": {"check_same_thread": False}} if url.startswith("sqlite") else {"pool_pre_ping": True}
        self.engine = create_engine(url, **kw)
        if url.startswith("sqlite"):
            @event.listens_for(self.engine, "connect")
            def _pragmas(conn, _):  # concurrent readers while a job writes its progress
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA busy_timeout=5000")
                cur.close()
        Base.metadata.create_all(self.engine)
        self.session = sessionmaker(self.engine, expire_on_commit=False)

    # tokens
    def create_token(self, name: str) -> str:
        name = name.strip()
        if not name or len(name) > 100:
            raise ValueError("token name must be 1-100 characters")
        token = secrets.token_urlsafe(32)
        with self.session.begin() as s:
            if s.get(Token, name) is not None:
                raise ValueError(f"a token named '{name}' exists already; choose another name")
            s.add(Token(name=name, digest=token_digest(token)))
        return token

    def token_name(self, token: str) -> str | None:
        with self.session() as s:
            row = s.scalar(select(Token).where(Token.digest == token_digest(token)))
            return row.name if row else None

    def tokens(self) -> list[dict]:
        """Every token's name, creation time and last audited activity (never the token itself)."""
        with self.session() as s:
            last = dict(s.execute(select(Audit.token_name, func.max(Audit.time)).group_by(Audit.token_name)).all())
            return [{"name": t.name, "created": t.created, "last_used": last.get(t.name)}
                    for t in s.scalars(select(Token).order_by(Token.created))]

    def revoke_token(self, name: str) -> bool:
        """Delete the token called ``name``: requests carrying it get 401 from then on. False if absent."""
        with self.session.begin() as s:
            return s.execute(delete(Token).where(Token.name == name)).rowcount > 0

    # jobs
    def new_job(self, kind: str, model: str, bundle_hash: str, token_name: str, study_id: str = "",
                status: str = "queued") -> str:
        jid = str(uuid.uuid4())
        with self.session.begin() as s:
            s.add(Job(id=jid, kind=kind, model=model, bundle_hash=bundle_hash, token_name=token_name,
                      study_id=study_id, status=status))
        return jid

    def add_calculation(self, model: str, bundle_hash: str, token_name: str, study_id: str, result: dict,
                        input_hashes: dict) -> str:
        """A finished calculator job and its audit row, in one transaction (one disk sync per request)."""
        jid = str(uuid.uuid4())
        with self.session.begin() as s:
            s.add(Job(id=jid, kind="calculator", model=model, bundle_hash=bundle_hash, token_name=token_name,
                      study_id=study_id, status="done", progress=1.0, stage="done", finished=_now(),
                      result=_json(result)))
            s.add(Audit(token_name=token_name, action="calculate", model=model, bundle_hash=bundle_hash,
                        input_hashes=json.dumps(input_hashes, sort_keys=True), job_id=jid, outcome="done"))
        return jid

    def update_job(self, jid: str, **fields) -> None:
        for key in ("result", "problems"):
            if key in fields and not isinstance(fields[key], str):
                fields[key] = _json(fields[key])
        if fields.get("status") in ("done", "failed"):
            fields.setdefault("finished", _now())
        with self.session.begin() as s:
            job = s.get(Job, jid)
            for k, v in fields.items():
                setattr(job, k, v)

    def job(self, jid: str) -> Job | None:
        with self.session() as s:
            return s.get(Job, jid)

    def active_job_ids(self) -> set[str]:
        with self.session() as s:
            return set(s.scalars(select(Job.id).where(Job.status.in_(("queued", "running")))).all())

    def active_jobs(self) -> int:
        with self.session() as s:
            return len(s.scalars(select(Job.id).where(Job.status.in_(("queued", "running")))).all())

    def fail_interrupted(self) -> list[str]:
        """Jobs left queued/running by a stopped server are marked failed at start; returns their ids."""
        with self.session.begin() as s:
            jobs = s.scalars(select(Job).where(Job.status.in_(("queued", "running")))).all()
            for j in jobs:
                j.status, j.finished = "failed", _now()
                j.problems = json.dumps([{"file": "", "row": None, "column": None, "severity": "error",
                                          "reason": "the server stopped while this job ran; submit it again"}])
            return [j.id for j in jobs]

    def ended_jobs(self) -> set[str]:
        """Ids of the jobs that are over (done, failed, expired)."""
        with self.session() as s:
            return set(s.scalars(select(Job.id).where(Job.status.not_in(("queued", "running")))).all())

    def expire(self, before: dt.datetime) -> list[str]:
        """Results of jobs finished before ``before`` are dropped (retention): the row stays for the
        audit trail with status ``expired``, no result, no problems and no study ID. Returns the ids."""
        with self.session.begin() as s:
            jobs = s.scalars(select(Job).where(Job.status.in_(("done", "failed")), Job.finished < before)).all()
            for j in jobs:
                j.status, j.result, j.problems, j.study_id, j.stage = "expired", "", "", "", "expired"
            return [j.id for j in jobs]

    # audit
    def audit(self, token_name: str, action: str, *, model: str = "", bundle_hash: str = "",
              input_hashes: dict | None = None, job_id: str = "", outcome: str = "") -> None:
        with self.session.begin() as s:
            s.add(Audit(token_name=token_name, action=action, model=model, bundle_hash=bundle_hash,
                        input_hashes=json.dumps(input_hashes or {}, sort_keys=True), job_id=job_id,
                        outcome=outcome[:200]))

    def audit_rows(self) -> list[Audit]:
        with self.session() as s:
            return list(s.scalars(select(Audit).order_by(Audit.id)).all())
