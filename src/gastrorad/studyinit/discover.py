"""Finding images and masks under two folders and pairing them by patient, phase and lesion.

Every volume (a NIfTI/NRRD/MHA/MHD file, or a folder holding DICOM files) gets a key read
from its path relative to the folder, extensions stripped (``venous/P001_n1_mask``):

- with ``--pattern``, the regex is searched in that path; its named group ``id`` gives the
  patient, the optional groups ``lesion`` and ``phase`` the lesion and the phase;
- by default the patient is the file name without a trailing mask suffix (``_mask``,
  ``_seg``, ``_label``, ``-mask``, ...), or a DICOM series' top folder under the searched
  folder (``P001/CT/series2`` -> P001), and a phase word in the path
  (``arterial``, ``venous``, ``portal``, ``delayed``, ``plain``) is the phase and is taken out
  of the name (``P001_venous.nii.gz`` -> patient P001, phase venous);
- a mask whose patient is an image's patient plus ``_<text>`` is lesion ``<text>`` of that
  image (``P001_n1_mask.nii.gz`` -> patient P001, lesion n1).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from gastrorad.errors import InputError, Problem
from gastrorad.io.images import IMAGE_SUFFIXES

#: Trailing mask suffixes the default pattern strips (``P001_mask`` -> ``P001``).
MASK_SUFFIXES = ("mask", "masks", "seg", "segmentation", "label", "labels", "roi", "gt")
DEFAULT_PATTERN = r"(?:^|/)(?P<id>[^/]+?)(?:[_-](?:" + "|".join(MASK_SUFFIXES) + r"))?$"
#: Phase words found in a path by default (a folder name or a ``_word`` token of the file name).
DEFAULT_PHASE_PATTERN = (r"(?i)(?:^|(?<=[/_.\-]))(?P<phase>arterial|venous|portal[_-]?venous|portal|pv|delayed|plain"
                         r"|unenhanced|non[_-]?contrast)(?=$|[/_.\-])")
_PHASE_ORDER = ("plain", "unenhanced", "noncontrast", "non_contrast", "arterial", "venous", "portal", "portal_venous",
                "pv", "delayed")


@dataclass
class Volume:
    """One image or mask found under a folder."""

    path: Path                  # the file, or the DICOM series folder
    rel: str                    # path relative to the searched folder, extensions stripped
    patient: str | None = None
    phase: str | None = None
    lesion: str | None = None
    why_unmatched: str | None = None


@dataclass
class Pairing:
    """Images paired with masks, and what did not pair."""

    pairs: list[tuple[Volume, Volume]] = field(default_factory=list)   # (image, mask)
    images_without_mask: list[Volume] = field(default_factory=list)
    masks_without_image: list[Volume] = field(default_factory=list)
    unparsed: list[tuple[str, Volume]] = field(default_factory=list)   # ("image" | "mask", volume)


def strip_extension(name: str) -> str:
    low = name.lower()
    for suffix in sorted(IMAGE_SUFFIXES + (".dcm",), key=len, reverse=True):
        if low.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _is_dicom_file(path: Path) -> bool:
    if path.suffix.lower() == ".dcm":
        return True
    if path.suffix:  # DICOM files without a suffix are common; others with one are not DICOM
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def find_volumes(root: str | Path, *, masks: bool = False) -> list[Volume]:
    """Every image volume under ``root``: image files, and folders that hold DICOM files.

    For masks, a DICOM file lying directly in ``root`` is one mask (a SEG or RTSTRUCT named
    after its patient); deeper down, the folder holding DICOM files is the reference.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(Problem(str(root), "folder does not exist"))
    found: list[Volume] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        dicom = []
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            p = here / name
            if any(name.lower().endswith(s) for s in IMAGE_SUFFIXES):
                found.append(Volume(p, strip_extension(p.relative_to(root).as_posix())))
            elif _is_dicom_file(p):
                dicom.append(p)
        if dicom and masks and here == root:
            found += [Volume(p, strip_extension(p.relative_to(root).as_posix())) for p in dicom]
        elif dicom:
            rel = here.relative_to(root).as_posix()
            found.append(Volume(here, rel if rel != "." else here.name))
    return found


def parse_keys(volumes: list[Volume], pattern: str | None, phase_pattern: str | None) -> list[Volume]:
    """Fill each volume's patient / phase / lesion from its path; those that do not match keep
    ``patient=None`` and a reason."""
    rx = _compile(pattern or DEFAULT_PATTERN, "--pattern")
    if "id" not in rx.groupindex:
        raise InputError(Problem("--pattern", f"the pattern {pattern!r} has no named group 'id', e.g. "
                                 r"'(?P<id>P\d+)_(?P<lesion>n\d+)'"))
    prx = _compile(phase_pattern, "--phase-pattern") if phase_pattern else None
    default_phase = _compile(DEFAULT_PHASE_PATTERN, "phase")
    for v in volumes:
        rel = v.rel
        if pattern is None:  # the default: phase word out of the name, then the mask suffix
            m = (prx or default_phase).search(rel)
            if m:
                v.phase = _group(m, "phase")
                rel = _drop_token(rel, m.span(_group_name(m, "phase")))
            if v.path.is_dir():  # a DICOM series folder: the patient folder is the top one (P001/CT/series2)
                rel = rel.split("/")[0]
        m = rx.search(rel)
        if not m or not m.group("id"):
            v.why_unmatched = f"the path '{v.rel}' does not match the pattern"
            continue
        v.patient = m.group("id")
        v.lesion = m.groupdict().get("lesion") or None
        v.phase = m.groupdict().get("phase") or v.phase
        if v.phase is None and prx is not None:
            pm = prx.search(v.rel)
            v.phase = _group(pm, "phase") if pm else None
        v.phase = v.phase.lower().replace("-", "_") if v.phase else None
    return volumes


def _compile(pattern: str, option: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise InputError(Problem(option, f"not a valid regular expression {pattern!r}: {exc}")) from None


def _group_name(m: re.Match, name: str):
    return name if name in m.re.groupindex else (1 if m.re.groups else 0)


def _group(m: re.Match, name: str) -> str:
    return m.group(_group_name(m, name))


def _drop_token(rel: str, span: tuple[int, int]) -> str:
    """``rel`` without the phase token at ``span`` and its separator (``P001_venous`` -> ``P001``);
    a phase folder (``venous/P001``) goes with its slash."""
    a, b = span
    if a > 0 and rel[a - 1] in "_-." and (b == len(rel) or rel[b] in "/_-."):
        a -= 1
    elif b < len(rel) and rel[b] in "/_-.":
        b += 1
    out = rel[:a] + rel[b:]
    return out.strip("/") or rel


def pair(images: list[Volume], masks: list[Volume]) -> Pairing:
    """Pair each mask with the image of its patient and phase (lesions: several masks per image)."""
    res = Pairing()
    by_patient: dict[str, list[Volume]] = {}
    for v in images:
        if v.patient is None:
            res.unparsed.append(("image", v))
            continue
        if any(o.phase == v.phase for o in by_patient.get(v.patient, [])):
            v.why_unmatched = f"a second image of patient {v.patient}" + (f", phase {v.phase}" if v.phase else "")
            res.unparsed.append(("image", v))
            continue
        by_patient.setdefault(v.patient, []).append(v)
    used: set[int] = set()
    seen: set[tuple] = set()
    for m in masks:
        if m.patient is None:
            res.unparsed.append(("mask", m))
            continue
        if m.patient not in by_patient:  # P001_n1 -> lesion n1 of P001 (the longest image ID that fits)
            stems = [p for p in by_patient if m.patient.startswith(p) and m.patient[len(p):len(p) + 1] in ("_", "-")]
            if stems:
                best = max(stems, key=len)
                m.lesion = m.lesion or m.patient[len(best) + 1:]
                m.patient = best
        candidates = by_patient.get(m.patient, [])
        if m.phase is not None:  # the image of that phase, or the patient's one image named without a phase
            same = [c for c in candidates if c.phase == m.phase]
            candidates = same or (candidates if len(candidates) == 1 and candidates[0].phase is None else [])
        elif len(candidates) > 1:
            m.why_unmatched = (f"patient {m.patient} has images of several phases ("
                               + ", ".join(sorted(str(c.phase) for c in candidates)) + "): name the mask's phase")
            res.masks_without_image.append(m)
            continue
        if not candidates:
            m.why_unmatched = f"no image of patient {m.patient}" + (f", phase {m.phase}" if m.phase else "")
            res.masks_without_image.append(m)
            continue
        image = candidates[0]
        key = (image.patient, image.phase, m.lesion)
        if key in seen:
            m.why_unmatched = "a second mask of the same patient, phase and lesion"
            res.unparsed.append(("mask", m))
            continue
        seen.add(key)
        m.phase = image.phase
        used.add(id(image))
        res.pairs.append((image, m))
    for vs in by_patient.values():
        for v in vs:
            if id(v) not in used:
                v.why_unmatched = "no mask"
                res.images_without_mask.append(v)
    return res


def phase_order(phases) -> list[str]:
    return sorted(set(phases), key=lambda p: (_PHASE_ORDER.index(p) if p in _PHASE_ORDER else len(_PHASE_ORDER), p))
