"""Versions of the software a run used (written to the run folder, the report and the bundle)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

PACKAGES = ("gastrorad", "numpy", "scipy", "pandas", "SimpleITK", "pydicom", "highdicom", "torch", "monai",
            "lightning", "torchsurv", "scikit-learn", "statsmodels", "lifelines", "numba", "matplotlib")


def software_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
