"""Every bench script starts as the README documents it (`python bench/NAME.py ...`, from the
repository root, with bench/ as sys.path[0]): `--help` exits 0 and prints its usage.

A script named like a standard-library module (bench/signal.py did) shadows that module for
every script in the folder: `python bench/train.py` died with "module 'signal' has no attribute
'SIGINT'". The name check below keeps it from coming back.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "bench").glob("*.py"))


def test_no_bench_script_shadows_the_standard_library():
    clashes = [p.name for p in SCRIPTS if p.stem in sys.stdlib_module_names]
    assert not clashes, f"rename {clashes}: they shadow standard-library modules for every script in bench/"


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_bench_script_help(script):
    r = subprocess.run([sys.executable, str(script.relative_to(ROOT)), "--help"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "usage" in r.stdout.lower(), r.stdout[:500]
