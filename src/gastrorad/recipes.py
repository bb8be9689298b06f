"""The recipes: study files that reproduce the five reference studies (``recipes/*.yaml``).

``gastrorad run s1_nact_resistance --data <folder>`` finds a recipe by name: in the
source tree's ``recipes/`` folder, or where a wheel installs them
(``<prefix>/share/gastrorad/recipes``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from gastrorad.errors import InputError, Problem


def recipe_dirs() -> list[Path]:
    return [Path(__file__).resolve().parents[2] / "recipes", Path(sys.prefix) / "share" / "gastrorad" / "recipes"]


def list_recipes() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in recipe_dirs():
        if d.is_dir():
            for p in sorted(d.glob("*.yaml")):
                found.setdefault(p.stem, p)
    return found


def find_study_file(ref: str | Path) -> Path:
    """A study file path as given, or a recipe by name (``s1_nact_resistance``)."""
    p = Path(ref)
    if p.exists():
        return p
    recipes = list_recipes()
    name = p.stem if p.suffix in (".yaml", ".yml") else str(ref)
    if name in recipes:
        return recipes[name]
    raise InputError(Problem(str(ref), "no such study file, and no recipe of that name (recipes: "
                             + ", ".join(recipes) + ")"))
