"""Names that become file names, and writes that must stay inside the output folder.

Study IDs from the user's tables end up in file names (Grad-CAM overlays, caches, figures).
An ID such as ``../../escaped_P0001`` would otherwise write outside the run's folder, so IDs
are checked when the tables are read (:func:`id_problem`) and every such write goes through
:func:`inside`, which refuses a path that resolves outside its root.
"""

from __future__ import annotations

from pathlib import Path

MAX_ID_LENGTH = 128


def id_problem(value) -> str | None:
    """Why ``value`` cannot be a study ID used in file names, or None when it can.

    Refused: path separators (``/``, ``\\``), a leading dot (``.``, ``..``, hidden files),
    control characters, ``:`` (drive letters and NTFS streams) and IDs longer than 128 characters.
    """
    s = str(value)
    if "/" in s or "\\" in s:
        return "contains a path separator ('/' or '\\'); study IDs become file names"
    if s.startswith("."):
        return "starts with '.'; study IDs become file names ('.', '..' and hidden names are refused)"
    if ":" in s:
        return "contains ':'; study IDs become file names"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in s):
        return "contains a control character"
    if len(s) > MAX_ID_LENGTH:
        return f"is longer than {MAX_ID_LENGTH} characters"
    return None


def inside(root: str | Path, *parts: str) -> Path:
    """``root / parts...``, refused (ValueError) unless it resolves inside ``root``."""
    base = Path(root).resolve()
    path = base.joinpath(*[str(p) for p in parts]).resolve()
    if path != base and base not in path.parents:
        raise ValueError(f"refused to write {path}: outside the output folder {base}")
    return path
