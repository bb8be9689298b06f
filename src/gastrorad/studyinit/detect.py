"""What ``gastrorad init`` reads off the data: the clinical table's roles (patient, centre,
cohort, outcome, variables) and the ROIs' size and surroundings (patch side, window).

Each decision is a :class:`Choice` with the reason, written as a comment into study.yaml.
"""

from __future__ import annotations

import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import SimpleITK as sitk

from gastrorad.errors import InputError, Problem

ID_NAMES = ("patient_id", "patientid", "patient", "id", "pid", "case", "case_id", "subject", "subject_id")
CENTER_NAMES = ("center", "centre", "site", "hospital", "institution", "center_id", "centre_id", "site_id",
                "hospital_id", "center_name", "centre_name")
COHORT_NAMES = ("cohort", "split", "set", "subset", "partition", "dataset")
COHORT_VALUES = {"training": "training", "train": "training", "internal": "internal", "validation": "internal",
                 "valid": "internal", "val": "internal", "internal_validation": "internal", "test": "test",
                 "testing": "test", "prospective": "prospective", "external": "external"}
BINARY_NAMES = ("label", "outcome", "response", "resistance", "resistant", "responder", "recurrence", "relapse",
                "malignant", "malignancy", "target", "class", "y")
EVENT_WORDS = ("event", "status", "death", "dead", "died")
#: Above this share of ROI surroundings below -500 HU, the ROIs sit in lung.
AIR_SHARE = 0.5
LUNG_WINDOW = {"level": -600, "width": 1500}
SOFT_TISSUE_WINDOW = {"low": -350, "high": 450}


@dataclass
class Choice:
    """One setting init chose, its value as shown, and why."""

    setting: str
    value: str
    why: str


def norm(name) -> str:
    return re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_")


def id_text(v) -> str | float:
    """A cell as an ID: stripped text; a number typed in a spreadsheet (1001.0) as 1001."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return np.nan
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def find_id_column(df: pd.DataFrame, ids: set[str]) -> tuple[str, str]:
    """The column that names the patients: ``patient_id``, else the one sharing most values with
    the image IDs (name breaks ties). Returns (column, why)."""
    if "patient_id" in df.columns:
        return "patient_id", "the table's patient_id column"
    best, best_n = None, -1
    for col in df.columns:
        n = len(ids & set(df[col].map(id_text).dropna()))
        named = norm(col) in ID_NAMES
        if n > best_n or (n == best_n and named):
            best, best_n = col, n
    if best is None or (best_n == 0 and norm(best) not in ID_NAMES):
        named = [c for c in df.columns if norm(c) in ID_NAMES]
        if not named:
            raise InputError(Problem("clinical table", "no patient ID column: name it patient_id, or make one "
                                     "column's values the IDs read from the image file names"))
        return named[0], f"the column '{named[0]}' (its name; no value matches an image ID)"
    return best, f"the column '{best}' ({best_n} of its values are image IDs)"


def _binary(s: pd.Series) -> bool:
    num = pd.to_numeric(s, errors="coerce")
    vals = set(num.dropna().unique().tolist())
    return bool(vals) and vals <= {0, 1} and num.notna().sum() == s.notna().sum()


def _numeric(s: pd.Series) -> bool:
    num = pd.to_numeric(s, errors="coerce")
    return s.notna().any() and num.notna().sum() == s.notna().sum()


@dataclass
class ClinicalPlan:
    """Roles of the clinical table's columns."""

    center: str | None = None
    cohort: str | None = None
    cohort_values: dict[str, str] = field(default_factory=dict)
    outcome: dict = field(default_factory=dict)
    outcome_columns: set[str] = field(default_factory=set)
    variables: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    choices: list[Choice] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def survival_pairs(df: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(time, event, name) column pairs: ``time``/``event``, ``os_time``/``os_event`` (or ``os_status``)."""
    out = []
    for t in df.columns:
        nt = norm(t)
        if not (nt == "time" or nt.endswith("_time") or nt.startswith("time_")) or not _numeric(df[t]):
            continue
        prefix = "" if nt == "time" or nt.startswith("time_") else nt[: -len("_time")]
        for e in df.columns:
            ne = norm(e)
            if any(ne == (f"{prefix}_{w}" if prefix else w) for w in EVENT_WORDS) and _binary(df[e]):
                out.append((t, e, prefix or "os"))
                break
    return out


def plan_clinical(df: pd.DataFrame, *, outcome: str | None = None, preferred_kind: str = "binary",
                  exclude: tuple[str, ...] = ()) -> ClinicalPlan:
    """Centre, cohort, outcome and variables of a clinical table whose ID column is ``patient_id``."""
    plan = ClinicalPlan()
    cols = [c for c in df.columns if c != "patient_id" and c not in exclude]
    plan.center = next((c for c in cols if norm(c) in CENTER_NAMES), None)
    for c in cols:
        if norm(c) not in COHORT_NAMES:
            continue
        mapped = {v: _cohort_name(v) for v in df[c].dropna().astype(str).unique()}
        if "training" in mapped.values() and all(mapped.values()) and df[c].notna().all():
            plan.cohort, plan.cohort_values = c, mapped
            break
        plan.choices.append(Choice("cohorts", f"column '{c}' not used",
                                   "its values are not all cohort names (training, internal/validation, test, "
                                   "external..., prospective) with some training"))
    _plan_outcome(df, cols, outcome, preferred_kind, plan)
    taken = {plan.center, plan.cohort, *plan.outcome_columns}
    for c in cols:
        if c in taken:
            continue
        s = df[c]
        why = _not_a_variable(c, s)
        if why:
            plan.choices.append(Choice("clinical.variables", f"'{c}' left out", why))
            continue
        plan.variables.append(c)
        num = pd.to_numeric(s, errors="coerce")
        levels = s.dropna().nunique()
        if not _numeric(s) or (levels <= 5 and (num.dropna() % 1 == 0).all()):
            plan.categorical.append(c)
    return plan


def _cohort_name(v: str) -> str | None:
    key = norm(v)
    if key in COHORT_VALUES:
        return COHORT_VALUES[key]
    return key if re.fullmatch(r"external\w*", key) else None


def _not_a_variable(name: str, s: pd.Series) -> str | None:
    if s.isna().all():
        return "empty column"
    if s.dropna().nunique() < 2:
        return "a single value"
    if not _numeric(s):
        text = s.dropna().astype(str)
        if text.nunique() == len(text) and len(text) > 5:
            return "a different text in every row (an identifier or free text)"
        dates = pd.to_datetime(text, errors="coerce", format="mixed")
        if dates.notna().mean() > 0.9 and text.str.contains(r"\d{4}|\d+[/.-]\d+[/.-]\d+").mean() > 0.9:
            return "dates (name one in cohorts.prospective to set apart a prospective cohort)"
    if norm(name) in ID_NAMES:
        return "an identifier"
    return None


def _plan_outcome(df: pd.DataFrame, cols: list[str], outcome: str | None, preferred: str, plan: ClinicalPlan) -> None:
    pairs = survival_pairs(df[cols])
    binaries = sorted((c for c in cols if norm(c) in BINARY_NAMES and _binary(df[c])),
                      key=lambda c: BINARY_NAMES.index(norm(c)))
    plan.outcome_columns |= set(binaries) | {c for t, e, _ in pairs for c in (t, e)}
    if outcome:
        named = [c.strip() for c in outcome.split(",") if c.strip()]
        missing = [c for c in named if c not in df.columns]
        if missing:
            plan.problems.append(Problem("--outcome", "no such column in the clinical table (columns: "
                                         + ", ".join(map(str, cols)) + ")", column=missing[0]))
            return
        plan.outcome_columns |= set(named)
        if len(named) == 2:
            pairs = [(named[0], named[1], "os")] + [p for p in pairs if p[0] != named[0]]
            return _survival(plan, pairs, "given by --outcome", df)
        col = named[0]
        if _binary(df[col]):
            return _binary_outcome(plan, col, "given by --outcome (0/1 values)", pairs)
        pair = [p for p in pairs if p[0] == col]
        if pair:
            return _survival(plan, pair + [p for p in pairs if p[0] != col], "given by --outcome", df)
        plan.problems.append(Problem("--outcome", "neither a 0/1 column nor a survival time with an event column "
                                     "beside it (give both: --outcome TIME,EVENT)", column=col))
        return
    if binaries and (preferred == "binary" or not pairs):
        return _binary_outcome(plan, binaries[0], f"a 0/1 column named '{binaries[0]}'", pairs)
    if pairs:
        return _survival(plan, pairs, "a time column with a 0/1 event column beside it", df)
    plan.problems.append(Problem("clinical table", "no outcome found: no 0/1 column named "
                                 + "/".join(BINARY_NAMES[:5]) + "/..., no time + event columns; name it with "
                                 "--outcome COLUMN (or --outcome TIME,EVENT)"))


def _extra(pairs) -> list[dict]:
    return [{"time": t, "event": e, "name": n} for t, e, n in pairs]


def _binary_outcome(plan: ClinicalPlan, col: str, why: str, pairs) -> None:
    plan.outcome = {"kind": "binary", "label": col}
    if pairs:
        plan.outcome["extra_survival"] = _extra(pairs)
        why += "; " + ", ".join(f"{t}/{e}" for t, e, _ in pairs) + " analysed alongside (extra_survival)"
    plan.choices.append(Choice("outcome", f"binary, label {col}", why))


def _survival(plan: ClinicalPlan, pairs, why: str, df: pd.DataFrame) -> None:
    t, e, _ = pairs[0]
    plan.outcome = {"kind": "survival", "time": t, "event": e}
    unit = next((u for u in ("days", "weeks", "months", "years") if u in norm(t) or u[:-1] in norm(t).split("_")), None)
    if unit:
        plan.outcome["time_unit"] = unit
    if pairs[1:]:
        plan.outcome["extra_survival"] = _extra(pairs[1:])
    plan.choices.append(Choice("outcome", f"survival, time {t}, event {e}", why + (
        f"; time unit {unit} from the column name" if unit else "; time unit: the recipe's (check it)")))


# ---------------------------------------------------------------- ROIs: size and surroundings


@dataclass
class RoiStats:
    """Per measured ROI: largest in-plane extent (mm), share of its surroundings below -500 HU,
    and why its image does not look like HU (None when it does)."""

    extents: list[float] = field(default_factory=list)
    air_share: list[float] = field(default_factory=list)
    surround_median: list[float] = field(default_factory=list)
    not_hu: list[str] = field(default_factory=list)
    value_range: list[tuple[float, float]] = field(default_factory=list)  # each image's (min, max)
    image_extent_mm: list[float] = field(default_factory=list)  # each image's smaller in-plane field of view
    measured: int = 0
    total: int = 0
    problems: list[Problem] = field(default_factory=list)


def measure_roi(image_ref: str, mask_ref: str, margin_mm: float = 10.0) -> tuple:
    """(largest in-plane extent in mm, share of the surroundings below -500 HU, their median, not-HU reason,
    the image's (min, max) value, its smaller in-plane field of view in mm)."""
    from gastrorad.io.images import read_image
    from gastrorad.io.masks import read_mask
    image = read_image(image_ref)
    mask = sitk.GetArrayFromImage(read_mask(mask_ref, image)) > 0  # a copy: a view would outlive its image
    arr = sitk.GetArrayViewFromImage(image)
    sx, sy = image.GetSpacing()[:2]
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    extent = 0.0
    for z in zs:
        ys, xs = np.nonzero(mask[z])
        extent = max(extent, (xs.max() - xs.min() + 1) * sx, (ys.max() - ys.min() + 1) * sy)
    _, ys, xs = np.nonzero(mask)
    my, mx = int(math.ceil(margin_mm / sy)), int(math.ceil(margin_mm / sx))
    box = (slice(zs.min(), zs.max() + 1), slice(max(ys.min() - my, 0), ys.max() + my + 1),
           slice(max(xs.min() - mx, 0), xs.max() + mx + 1))
    around = arr[box][~mask[box]]
    around = around if around.size else arr[box].ravel()
    fov = float(min(image.GetSize()[0] * sx, image.GetSize()[1] * sy))
    return (float(extent), float(np.mean(around < -500)), float(np.median(around)), not_hu_reason(arr),
            (float(arr.min()), float(arr.max())), fov)


def not_hu_reason(arr: np.ndarray) -> str | None:
    """Why a volume does not look like CT in Hounsfield units, or None."""
    sample = np.asarray(arr[:: max(1, arr.shape[0] // 16), ::4, ::4], dtype=np.float64)
    values = np.unique(sample)
    if values.size <= 2 and set(values.tolist()) <= {0.0, 1.0}:
        return "binary 0/1 values (a mask given as an image?)"
    lo, hi = float(sample.min()), float(sample.max())
    if lo >= 0 and hi <= 1:
        return f"values within 0..1 ({lo:.3g}..{hi:.3g}): normalised, not HU"
    if lo >= 0:
        return f"no negative values ({lo:.4g}..{hi:.4g}): CT in HU has air near -1000 (rescale intercept missing?)"
    if lo < -3100 or hi > 40000:
        return f"values {lo:.4g}..{hi:.4g} beyond the HU range"
    return None


def measure_rois(pairs: list[tuple[str, str]], *, max_rois: int = 40, workers: int = 2) -> RoiStats:
    """Measure up to ``max_rois`` (image, mask) pairs, evenly spread over the list."""
    stats = RoiStats(total=len(pairs))
    if not pairs:
        return stats
    idx = sorted(set(np.linspace(0, len(pairs) - 1, min(max_rois, len(pairs))).round().astype(int).tolist()))

    def one(i):
        try:
            return measure_roi(*pairs[i])
        except InputError as exc:
            return exc.problems
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for res in pool.map(one, idx):
            if isinstance(res, list):
                stats.problems += res
                continue
            extent, air, median, not_hu, value_range, fov = res
            stats.value_range.append(value_range)
            stats.image_extent_mm.append(fov)
            stats.extents.append(extent)
            stats.air_share.append(air)
            stats.surround_median.append(median)
            if not_hu:
                stats.not_hu.append(not_hu)
            stats.measured += 1
    return stats


def patch_side(p90: float) -> float:
    """About 1.75x the 90th-percentile ROI extent, rounded to 5 mm (1 mm for ROIs up to 20 mm): within 1.5-2x."""
    step = 5.0 if p90 > 20 else 1.0
    return float(max(8.0, round(1.75 * p90 / step) * step))


def choose_window(stats: RoiStats, recipe_window: dict | None) -> tuple[dict, Choice]:
    """Lung window when the ROIs' surroundings are mostly air, else a soft-tissue window."""
    recipe_window = recipe_window or SOFT_TISSUE_WINDOW
    if not stats.measured:
        return recipe_window, Choice("preprocess.window", _fmt_window(recipe_window), "the recipe's (no ROI measured)")
    n = stats.measured
    if len(stats.not_hu) * 2 > n:  # not HU: the images' own value range, so nothing is clipped
        lo = min(v[0] for v in stats.value_range)
        hi = max(v[1] for v in stats.value_range)
        hi = hi if hi > lo else lo + 1.0
        own = {"low": lo, "high": hi}
        return own, Choice("preprocess.window", _fmt_window(own),
                           f"the images' own value range: {len(stats.not_hu)} of {n} images do not look like CT in "
                           f"HU ({stats.not_hu[0]}), so a HU window would clip them")
    air = float(np.median(stats.air_share))
    med = float(np.median(stats.surround_median))
    where = (f"median share of voxels below -500 HU within 10 mm around the ROIs {air:.0%} (median {med:.0f} HU, "
             f"{n} ROIs)")
    if air > AIR_SHARE:
        return dict(LUNG_WINDOW), Choice("preprocess.window", _fmt_window(LUNG_WINDOW),
                                         f"lung window: the ROIs sit in air ({where})")
    lo, hi = _bounds(recipe_window)
    if -400 <= lo and hi <= 500:
        return recipe_window, Choice("preprocess.window", _fmt_window(recipe_window),
                                     f"the recipe's soft-tissue window: the ROIs sit in soft tissue ({where})")
    return dict(SOFT_TISSUE_WINDOW), Choice("preprocess.window", _fmt_window(SOFT_TISSUE_WINDOW),
                                            f"soft-tissue window: the ROIs sit in soft tissue ({where})")


def _bounds(w: dict) -> tuple[float, float]:
    if "low" in w and "high" in w:
        return float(w["low"]), float(w["high"])
    return float(w["level"]) - float(w["width"]) / 2, float(w["level"]) + float(w["width"]) / 2


def _fmt_window(w: dict) -> str:
    lo, hi = _bounds(w)
    return f"{lo:g}..{hi:g} HU" + (f" (level {w['level']:g}, width {w['width']:g})" if "level" in w else "")
