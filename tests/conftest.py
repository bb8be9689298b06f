"""Shared fixtures: the real sample data in ../shared/data and tiny synthetic studies."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
# The sample data sits in ../shared/data beside the checkout; GASTRORAD_SHARED_DATA overrides.
SHARED = Path(os.environ.get("GASTRORAD_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """A file of ../shared/data, or skip the test (with the reason) when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"sample data not available: {p}")
    return p


@pytest.fixture(scope="session")
def s1_study(tmp_path_factory) -> Path:
    """A tiny synthetic S1 study (8 patients, 3 centres); treat as read-only, copy to modify."""
    from gastrorad.synth import synthesize
    out = tmp_path_factory.mktemp("s1") / "study"
    synthesize("s1", out, n=8, seed=3, workers=2)
    levels_seen_in_training(out)
    return out


def levels_seen_in_training(study: Path) -> None:
    """Recode, in the other cohorts, each categorical level the training cohort lacks to a level it has.

    With 8 patients, two are in training, so the others hold levels training never saw: a run would
    stop at fit, and validate says so (issue 28). The tiny study is meant to be clean.
    """
    import pandas as pd

    from gastrorad.config import load_study
    from gastrorad.data.cohorts import assign_cohorts
    cfg = load_study(study / "study.yaml")
    clin = pd.read_csv(study / "clinical.csv", dtype={"patient_id": str, "center": str})
    train = (assign_cohorts(clin, cfg)[0] == "training").to_numpy()
    for var in cfg.clinical.categorical:
        seen = clin.loc[train, var].dropna()
        if seen.empty:
            continue
        clin.loc[~train & clin[var].notna() & ~clin[var].isin(set(seen)), var] = seen.iloc[0]
    clin.to_csv(study / "clinical.csv", index=False)


@pytest.fixture
def s1_copy(s1_study, tmp_path) -> Path:
    """A writable copy of the tiny S1 study (without any run folder)."""
    dst = tmp_path / "study"
    shutil.copytree(s1_study, dst, ignore=shutil.ignore_patterns("run"))
    return dst


def phantom(size=(40, 36, 30), spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0), value=0.0) -> sitk.Image:
    """A float32 image in LPS filled with ``value``."""
    arr = np.full(size[::-1], value, dtype=np.float32)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def write_yaml(path: Path, data: dict) -> Path:
    import yaml
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def kill_parent(script: Path, seconds: float) -> tuple[list[int], list[int]]:
    """Run ``script`` (it prints its worker pids on its first line, then waits), SIGKILL it, and
    return (its workers, those still running ``seconds`` later, which are then killed)."""
    import signal
    import subprocess
    import sys
    import time
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    workers = [int(v) for v in proc.stdout.readline().split()]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + seconds
    alive = list(workers)
    while alive and time.time() < deadline:
        alive = [p for p in workers if os.path.exists(f"/proc/{p}") and
                 "zombie" not in open(f"/proc/{p}/status").read().lower()]
        time.sleep(0.1)
    for p in alive:
        os.kill(p, signal.SIGKILL)
    return workers, alive
