"""``gastrorad init``: folders of images and masks plus a spreadsheet -> manifest.csv, clinical.csv
and a study.yaml made from a recipe, with what was detected filled in and commented.

Python: :func:`init_study`. What it writes:

- ``manifest.csv``: one row per (image, mask) pair, paths relative to the output folder;
- ``clinical.csv``: ``patient_id`` first, the centre as ``center``, one row per patient with
  images and masks (lesion level: one row per lesion, ``<patient>_<lesion>``, the patient's row
  copied, and a column naming the patient);
- ``study.yaml``: the recipe with the data, outcome, cohorts, clinical variables, phases, patch
  side and window set from the data, each with a comment saying why;
- ``unmatched.csv``: images without masks, masks without images, patients without a clinical
  row and clinical rows without images (what was left out of the study, and why).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from gastrorad.data.tables import read_table, sheet_row
from gastrorad.errors import InputError, Problem
from gastrorad.io.atomic import atomic_write, atomic_write_text
from gastrorad.studyinit import detect, discover
from gastrorad.studyinit.detect import Choice
from gastrorad.studyinit.yamlout import dump

OUTPUT_FILES = ("manifest.csv", "clinical.csv", "study.yaml", "unmatched.csv")
DEFAULT_RECIPE = "s1_nact_resistance"
SINGLE_CENTRE = "A"


@dataclass
class InitResult:
    """What :func:`init_study` found, chose and wrote, and the validation of the result."""

    folder: Path
    recipe: Path
    pairs: int = 0
    patients: int = 0
    units: int = 0
    lesion_level: bool = False
    unmatched: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["what", "id", "where", "reason"]))
    choices: list[Choice] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)   # validation (and study-file) problems
    summary: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not [p for p in self.problems if p.severity == "error"]


def init_study(out: str | Path, images: str | Path, masks: str | Path, clinical: str | Path, *,
               sheet: str | None = None, recipe: str = DEFAULT_RECIPE, pattern: str | None = None,
               outcome: str | None = None, patient_column: str | None = None, phase_pattern: str | None = None,
               force: bool = False, validate: bool = True, max_rois: int = 40) -> InitResult:
    """Build a study folder from images, masks and a clinical table (see the module docstring).

    Raises :class:`InputError` for unusable input (no such folder or recipe, a bad regex, a
    table without an ID column) and when ``out`` already holds one of the output files and
    ``force`` is false. Problems of the study itself are in ``result.problems``.
    """
    from gastrorad.recipes import find_study_file
    out = Path(out)
    existing = [out / f for f in OUTPUT_FILES if (out / f).exists()]
    if existing and not force:
        raise InputError([Problem(str(p), "already exists; gastrorad init does not overwrite (use --force)")
                          for p in existing])
    recipe_path = find_study_file(recipe)
    raw = yaml.safe_load(recipe_path.read_text(encoding="utf-8")) or {}
    res = InitResult(folder=out, recipe=recipe_path)

    imgs = discover.parse_keys(discover.find_volumes(images), pattern, phase_pattern)
    msks = discover.parse_keys(discover.find_volumes(masks, masks=True), pattern, phase_pattern)
    pairing = discover.pair(imgs, msks)
    table = read_table(clinical, sheet)
    where = f"{clinical}#{sheet}" if sheet else str(clinical)
    id_col, why_id = detect.find_id_column(table, {p.patient for p, _ in pairing.pairs} or
                                           {v.patient for v in imgs if v.patient})
    res.choices.append(Choice("patient_id", id_col, why_id))
    table = table.rename(columns={id_col: "patient_id"})
    table["patient_id"] = table["patient_id"].map(detect.id_text)
    table = _drop_duplicates(table, where, res)

    known = set(table["patient_id"].dropna())
    paired = {img.patient for img, _ in pairing.pairs}
    res.unmatched = _unmatched_rows(pairing, {v.patient for v in imgs if v.patient}, table, known, where)
    pairs = [(img, m) for img, m in pairing.pairs if img.patient in known]
    full, n_rows = table, len(table)
    table = table[table["patient_id"].isin(paired)].reset_index(drop=True)
    res.pairs, res.patients = len(pairs), table["patient_id"].nunique()

    lesions = pd.Series([m.lesion or "primary" for _, m in pairs]).groupby([img.patient for img, _ in pairs]).nunique()
    res.lesion_level = bool(patient_column) or bool((lesions > 1).any())
    pcol = patient_column or "patient"
    if res.lesion_level and pcol in table.columns:
        raise InputError(Problem(where, f"the clinical table already has a column '{pcol}'; name the column of the "
                                 "lesion's patient otherwise with --patient-column", column=pcol))

    plan = detect.plan_clinical(table if len(table) else full, outcome=outcome,
                                preferred_kind=(raw.get("outcome") or {}).get("kind", "binary"))
    res.choices += plan.choices
    res.problems += plan.problems
    clin = _clinical_table(table, plan, res)
    manifest = _manifest(pairs, out, res.lesion_level)
    if res.lesion_level:
        clin = _expand_lesions(clin, manifest, pcol)
        res.choices.append(Choice("data.patient_column", pcol, _lesion_why(lesions, patient_column)))
    res.units = len(clin)

    stats = detect.measure_rois([(str(img.path), str(m.path)) for img, m in pairs], max_rois=max_rois)
    for p in stats.problems:
        res.warnings.append(f"ROI not measured: {p}")
    study, comments = _study(raw, recipe_path, out, plan, clin, manifest, stats, res, pcol)

    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "manifest.csv", manifest.drop(columns="patient"))  # the patient is clinical.csv's column
    _write_csv(out / "clinical.csv", clin)
    _write_csv(out / "unmatched.csv", res.unmatched)
    header = [f"Written by `gastrorad init` from the recipe {recipe_path.stem} ({recipe_path}).",
              "A comment above a setting says what init detected in the data; the other settings are the "
              "recipe's (its file explains them).", ""]
    atomic_write_text(out / "study.yaml", dump(study, comments, header))
    if not len(clin):
        res.problems.append(Problem(str(out / "clinical.csv"), f"no patient has an image, a mask and a clinical row "
                                    f"({len(imgs)} images, {len(msks)} masks, {n_rows} clinical rows matched "
                                    "nothing): see unmatched.csv, and --pattern for file names that hold more than "
                                    "the ID"))
    elif validate:
        _validate(out / "study.yaml", res)
    return res


def _unmatched_rows(pairing: discover.Pairing, with_images: set[str], table: pd.DataFrame, known: set[str],
                    where: str) -> pd.DataFrame:
    """Images without masks, masks without images, files not used, patients without a clinical row,
    clinical rows without images."""
    def volume(what: str, v: discover.Volume) -> dict:
        return {"what": what, "id": v.patient or "", "where": str(v.path), "reason": v.why_unmatched or ""}
    paired = {img.patient for img, _ in pairing.pairs}
    rows = [volume("image without mask", v) for v in pairing.images_without_mask]
    rows += [volume("mask without image", v) for v in pairing.masks_without_image]
    rows += [volume(f"{kind} not used", v) for kind, v in pairing.unparsed]
    rows += [{"what": "patient without a clinical row", "id": p, "where": "", "reason": f"no row in {where}"}
             for p in sorted(paired - known)]
    rows += [{"what": "clinical row without images", "id": pid, "where": f"row {sheet_row(i)}",
              "reason": "images but no mask" if pid in with_images else "no image"}
             for i, pid in table["patient_id"].items() if pid not in paired]
    return pd.DataFrame(rows, columns=["what", "id", "where", "reason"])


def _drop_duplicates(table: pd.DataFrame, where: str, res: InitResult) -> pd.DataFrame:
    dup = table["patient_id"].duplicated(keep="first") & table["patient_id"].notna()
    for i in np.flatnonzero(dup.to_numpy()):
        res.problems.append(Problem(where, f"duplicated patient '{table['patient_id'].iloc[i]}': only its first row "
                                    "is used", row=sheet_row(table.index[i]), column="patient_id", severity="warning"))
    return table[~dup & table["patient_id"].notna()]


def _clinical_table(table: pd.DataFrame, plan: detect.ClinicalPlan, res: InitResult) -> pd.DataFrame:
    """patient_id first, the centre as 'center' (one centre named A when none), the cohort column normalised."""
    df = table.copy()
    if plan.center is not None:
        df = df.drop(columns=[c for c in ("center",) if c != plan.center and c in df.columns])
        df = df.rename(columns={plan.center: "center"})
        df["center"] = df["center"].map(detect.id_text)
    else:
        df["center"] = SINGLE_CENTRE
    if plan.cohort is not None:
        df[plan.cohort] = df[plan.cohort].astype(str).map(plan.cohort_values)
        df = df.rename(columns={plan.cohort: "cohort"})
    first = ["patient_id", "center"] + (["cohort"] if plan.cohort is not None else [])
    return df[first + [c for c in df.columns if c not in first]]


def _rel(path: Path, out: Path) -> str:
    return Path(os.path.relpath(path.resolve(), out.resolve())).as_posix()


def _manifest(pairs, out: Path, lesion_level: bool) -> pd.DataFrame:
    rows = []
    for img, m in pairs:
        lesion = m.lesion or "primary"
        rows.append({"patient_id": f"{img.patient}_{lesion}" if lesion_level else img.patient,
                     "image": _rel(img.path, out), "mask": _rel(m.path, out), "phase": img.phase or "venous",
                     "lesion_id": lesion, "patient": img.patient})
    df = pd.DataFrame(rows, columns=["patient_id", "image", "mask", "phase", "lesion_id", "patient"])
    return df.sort_values(["patient_id", "phase", "lesion_id"], kind="stable").reset_index(drop=True)


def _expand_lesions(clin: pd.DataFrame, manifest: pd.DataFrame, pcol: str) -> pd.DataFrame:
    """One row per lesion: the patient's row copied, patient_id <patient>_<lesion>, a column naming the patient."""
    units = manifest[["patient", "patient_id"]].drop_duplicates()
    merged = units.merge(clin.rename(columns={"patient_id": "patient"}), on="patient", how="inner")
    merged = merged.rename(columns={"patient": pcol})
    first = ["patient_id", pcol]
    return merged[first + [c for c in merged.columns if c not in first]].reset_index(drop=True)


def _lesion_why(lesions: pd.Series, patient_column: str | None) -> str:
    many = int((lesions > 1).sum())
    if patient_column:
        return ("--patient-column given: each lesion is its own unit (patient_id <patient>_<lesion>, the patient's "
                "clinical row copied); cohorts, CV folds and bootstraps keep a patient's lesions together")
    return (f"{many} patient(s) have several lesion masks: each lesion is its own unit (patient_id "
            "<patient>_<lesion>, the patient's clinical row copied); cohorts, CV folds and bootstraps keep a "
            "patient's lesions together")


def _write_csv(path: Path, df: pd.DataFrame) -> None:
    with atomic_write(path) as tmp:
        df.to_csv(tmp, index=False)


def _study(raw: dict, recipe_path: Path, out: Path, plan: detect.ClinicalPlan, clin: pd.DataFrame,
           manifest: pd.DataFrame, stats: detect.RoiStats, res: InitResult, pcol: str) -> tuple[dict, dict]:
    """The recipe's settings with what the data says laid over them, and a comment per choice."""
    study = dict(raw)
    comments: dict[tuple, str] = {}

    def choose(path: tuple, value, choice: Choice) -> None:
        node = study
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
        comments[path] = f"{choice.value}: {choice.why}"
        res.choices.append(choice)

    study["name"] = out.resolve().name
    data = {"manifest": "manifest.csv", "clinical": "clinical.csv"}
    study["data"] = data
    if res.lesion_level:
        data["patient_column"] = pcol
        comments[("data", "patient_column")] = next(c.why for c in res.choices if c.setting == "data.patient_column")
    if plan.outcome:
        outcome = dict(plan.outcome)
        old = raw.get("outcome") or {}
        if outcome["kind"] == "survival" and "time_unit" not in outcome and old.get("time_unit"):
            outcome["time_unit"] = old["time_unit"]
        oc = next(c for c in plan.choices if c.setting == "outcome")
        study["outcome"] = outcome
        comments[("outcome",)] = f"{oc.value}: {oc.why}"
        if old.get("kind") and old["kind"] != outcome["kind"]:
            res.warnings.append(f"the recipe {recipe_path.stem} is a {old['kind']} study, the data's outcome is "
                                f"{outcome['kind']}: its model and training settings may not fit (choose another "
                                "recipe with --recipe, e.g. s5_gnen_survival for survival)")
            comments[("outcome",)] += f". NOTE: the recipe is a {old['kind']} study; check its other settings"
    choose(("cohorts",), *_cohorts(plan, clin, pcol if res.lesion_level else "patient_id", raw))
    _clinical_section(study, comments, plan, clin, raw)
    _preprocess(study, comments, manifest, stats, res, choose)
    study["output"] = "run"
    return study, comments


def _cohorts(plan: detect.ClinicalPlan, clin: pd.DataFrame, unit: str, raw: dict) -> tuple[dict, Choice]:
    """A cohort column when the table has one; else the largest centre split by the recipe's ratio
    (7:3 by default), the other centres external."""
    if plan.cohort is not None:
        values = ", ".join(f"{k} -> {v}" for k, v in sorted(plan.cohort_values.items()))
        return {"column": "cohort"}, Choice("cohorts", "from the column cohort", f"the table's column "
                                            f"'{plan.cohort}' names each patient's cohort ({values})")
    old = ((raw.get("cohorts") or {}).get("split") or {})
    ratio = old.get("ratio") or {"training": 7, "internal": 3}
    shares = ":".join(f"{v:g}" for v in ratio.values()) + " (" + "/".join(ratio) + ")"
    if plan.center is None:
        return ({"split": {"centers": [SINGLE_CENTRE], "ratio": ratio, "stratify": True}},
                Choice("cohorts", f"one centre, split {shares}", f"no centre column (center/centre/site/hospital): "
                       f"one centre, written as center '{SINGLE_CENTRE}' in clinical.csv"))
    sizes = clin.drop_duplicates(unit)["center"].value_counts()
    sizes = sizes.sort_index().sort_values(ascending=False, kind="stable")
    largest, others = str(sizes.index[0]), [str(c) for c in sizes.index[1:]]
    external = {c: ("external" if len(others) == 1 else f"external{k + 1}") for k, c in enumerate(others)}
    rule = {"split": {"centers": [largest], "ratio": ratio, "stratify": True}}
    if external:
        rule["external"] = external
    counts = ", ".join(f"{c} {n}" for c, n in sizes.items())
    return rule, Choice("cohorts", f"centre {largest} split {shares}" + (", others external" if others else ""),
                        f"the column '{plan.center}' names the centres (patients: {counts}); the largest is split, "
                        "stratified by the outcome")


def _clinical_section(study: dict, comments: dict, plan: detect.ClinicalPlan, clin: pd.DataFrame, raw: dict) -> None:
    """Variables and categorical ones from the table; the recipe's selection kept, its per-variable
    settings (units, reference levels, groups, ordinal levels) kept only where they fit the data."""
    old = dict(raw.get("clinical") or {})
    section = {"variables": plan.variables, "categorical": plan.categorical}
    levels = {v: set(clin[v].dropna().astype(str)) for v in plan.categorical}
    groups = {k: g for k, g in (old.get("groups") or {}).items()  # a grouping must name every level of the data
              if k in levels and levels[k] <= {str(x) for lv in g.values() for x in lv}}
    section.update({
        "units": {k: u for k, u in (old.get("units") or {}).items() if k in plan.variables and k not in levels},
        "groups": groups,
        "reference": {k: r for k, r in (old.get("reference") or {}).items()
                      if k in levels and str(r) in (set(map(str, groups[k])) if k in groups else levels[k])},
        "ordinal": {k: o for k, o in (old.get("ordinal") or {}).items()
                    if k in levels and set(map(str, o)) >= levels[k]},
    })
    section.update({k: v for k, v in old.items() if k not in section})
    study["clinical"] = {k: v for k, v in section.items() if v or k in ("variables", "categorical")}
    left = "; ".join(f"{c.value}: {c.why}" for c in plan.choices if c.setting == "clinical.variables")
    comments[("clinical", "variables")] = (("the table's other columns" + (f" ({left})" if left else ""))
                                           if plan.variables else "none: an image-only study")
    comments[("clinical", "categorical")] = "text columns, and whole-number columns with at most 5 levels"
    if not plan.variables:  # the fusion models, nomogram and reference then follow the study's shape
        for section_name, key in (("fusion", "models"), ("fusion", "nomogram"), ("evaluation", "reference")):
            (study.get(section_name) or {}).pop(key, None)
    subgroups = (study.get("evaluation") or {}).get("subgroups")
    if subgroups:
        study["evaluation"]["subgroups"] = [c for c in subgroups if c in clin.columns]


def _preprocess(study: dict, comments: dict, manifest: pd.DataFrame, stats: detect.RoiStats, res: InitResult,
                choose) -> None:
    from gastrorad.config.study import PreprocessConfig
    pre = dict(study.get("preprocess") or {})
    study["preprocess"] = pre
    per = manifest.groupby("patient_id")["phase"].apply(set)
    phases = discover.phase_order(manifest["phase"]) if len(manifest) else ["venous"]
    common = [p for p in phases if all(p in s for s in per)] or phases[:1]
    counts = manifest.drop_duplicates(["patient_id", "phase"])["phase"].value_counts()
    why = "phases of the images: " + ", ".join(f"{p} ({counts.get(p, 0)} of {len(per)})" for p in phases)
    if common != phases:
        why += "; only those every patient has are used"
    choose(("preprocess", "phases"), common, Choice("preprocess.phases", ", ".join(common), why))

    window, wchoice = detect.choose_window(stats, pre.get("window"))
    choose(("preprocess", "window"), window, wchoice)
    if stats.not_hu:
        res.warnings.append(f"{len(stats.not_hu)} of {stats.measured} measured images do not look like CT in HU: "
                            f"{stats.not_hu[0]}")

    patch = dict(pre.get("patch") or {})
    mode = patch.get("mode") or PreprocessConfig().patch.mode
    if not stats.extents:
        return
    p90 = float(np.percentile(stats.extents, 90))
    side = detect.patch_side(p90)
    if stats.image_extent_mm and side > min(stats.image_extent_mm):  # a patch wider than the image is padding
        side = float(np.floor(min(stats.image_extent_mm)))
    sample = f"{stats.measured} of {stats.total} ROIs" if stats.measured < stats.total else f"{stats.measured} ROIs"
    why = (f"about 1.75x the 90th-percentile largest in-plane ROI extent, {p90:.1f} mm (median "
           f"{float(np.median(stats.extents)):.1f} mm, {sample} measured)")
    if not _has_side(mode):
        res.choices.append(Choice("preprocess.patch.side_mm", "not set", f"patch mode {mode} has no side_mm; {why} "
                                  f"would give {side:g} mm"))
        return
    patch["mode"] = mode
    pre["patch"] = patch
    choose(("preprocess", "patch", "side_mm"), side, Choice("preprocess.patch.side_mm", f"{side:g} mm", why))
    profiles = []
    for name, prof in (study.get("profiles") or {}).items():  # a profile's own fixed side follows the ROIs too
        ppatch = ((prof or {}).get("preprocess") or {}).get("patch") or {}
        if "side_mm" in ppatch and _has_side(ppatch.get("mode") or mode):
            ppatch["side_mm"] = side
            profiles.append(name)
    comment = f"{side:g} mm: as preprocess.patch.side_mm"
    comments.update({("profiles", name, "preprocess", "patch", "side_mm"): comment for name in profiles})
    if profiles:
        res.choices.append(Choice("profiles: patch side_mm", f"{side:g} mm", "the profiles " + ", ".join(profiles)
                                  + " fix their own side: set to the same"))


def _has_side(mode: str) -> bool:
    from gastrorad.config import study as schema
    classes = {getattr(schema, n).model_fields["mode"].default: getattr(schema, n) for n in
               ("Slice2DPatch", "Stack25DPatch", "Volume3DPatch", "BBoxPatch", "SlicesPatch", "RoiSlicesPatch")}
    cls = classes.get(mode)
    return cls is not None and "side_mm" in cls.model_fields


def _validate(study_file: Path, res: InitResult) -> None:
    from gastrorad.config.study import load_study
    from gastrorad.data.validate import validate_study
    try:
        cfg = load_study(study_file)
    except InputError as exc:
        res.problems += exc.problems
        return
    report = validate_study(cfg)
    res.problems += report.problems
    res.summary = report.summary
