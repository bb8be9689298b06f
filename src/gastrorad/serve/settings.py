"""Settings of a ``gastrorad serve`` instance: state folder, database, limits."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def default_state_dir() -> Path:
    return Path(os.environ.get("GASTRORAD_SERVE_STATE", Path.home() / ".gastrorad" / "serve"))


@dataclass
class ServeSettings:
    """Where the server keeps its state and what it accepts.

    ``database_url``: SQLAlchemy URL; default ``sqlite:///<state_dir>/serve.db``. A server-grade
    database is a switch: ``postgresql+psycopg://user@host/gastrorad`` (install a driver such as
    ``psycopg``); the same tables are created on first start.
    """

    state_dir: Path = field(default_factory=default_state_dir)
    database_url: str | None = None
    workers: int = 2                      # image jobs running at once
    queue_limit: int = 32                 # jobs waiting or running before new ones get 429
    max_upload_mb: float = 512.0          # whole request body of an upload (image or batch job)
    max_json_kb: float = 64.0             # body of any other request (a calculation's JSON)
    zip_max_total_mb: float = 4096.0      # uncompressed size of an archive
    zip_max_ratio: float = 200.0          # uncompressed / compressed, per entry and overall
    zip_max_entries: int = 20000
    retain_uploads: bool = False          # keep uploaded images after their job ends
    threads_per_job: int = 1              # torch threads of one job
    retention_days: float | None = None   # results older than this are deleted (None: kept)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.state_dir / 'serve.db').resolve()}"

    @property
    def jobs_dir(self) -> Path:
        return self.state_dir / "jobs"
