"""Cohort assignment: from a column, or from a rule (seeded, stratified split of centres).

Every patient ends in exactly one cohort. Models, selections, normalisation constants,
imputations and cut-offs are later fitted on ``training`` only and frozen for the rest.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from gastrorad.config.study import StudyConfig
from gastrorad.data.tables import sheet_row
from gastrorad.errors import Problem

_COHORT_NAME = re.compile(r"^(training|internal|test|prospective|external\w*)$")


def is_cohort_name(name: str) -> bool:
    """Cohort names: training, internal, test, prospective, or external (optionally suffixed)."""
    return bool(_COHORT_NAME.match(str(name)))


_RANK = {"training": 0, "internal": 1, "test": 2, "prospective": 3}


def canonical_order(names) -> list[str]:
    """Cohort names in one fixed order (training, internal, test, prospective, external* by name),
    whatever order a study file lists them in."""
    return sorted(names, key=lambda k: (_RANK.get(str(k), 4), str(k)))


def split_counts(n: int, ratio: dict[str, float]) -> dict[str, int]:
    """Split ``n`` into parts proportional to ``ratio`` (largest remainder, ties in ``ratio``'s order)."""
    total = sum(ratio.values())
    exact = {k: n * v / total for k, v in ratio.items()}
    counts = {k: int(np.floor(x)) for k, x in exact.items()}
    left = n - sum(counts.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - counts[k]), list(ratio).index(k)))[:left]:
        counts[k] += 1
    return counts


def assign_cohorts(clinical: pd.DataFrame, cfg: StudyConfig, source: str = "clinical") -> tuple[pd.Series, list[Problem]]:
    """Cohort of each patient (a Series indexed by patient_id) and the problems found.

    Rule order: the prospective rule first, then the cohort column or the split of named
    centres (stratified by the outcome within each centre group, seeded by ``cfg.seed``),
    then the external map; centres named nowhere become ``external``.
    """
    rules = cfg.cohorts
    problems: list[Problem] = []
    df = clinical.reset_index(drop=True)
    cohort = pd.Series([None] * len(df), index=df.index, dtype=object)

    if rules.prospective is not None:
        col = rules.prospective.column
        if col not in df.columns:
            problems.append(Problem(source, "unknown column named by cohorts.prospective", column=col))
        elif rules.prospective.after is not None:
            dates = pd.to_datetime(df[col], errors="coerce")
            for i in np.nonzero(dates.isna().to_numpy() & df[col].notna().to_numpy())[0]:
                problems.append(Problem(source, f"'{df[col].iloc[i]}' is not a date (YYYY-MM-DD)", row=sheet_row(i), column=col))
            cohort[dates >= pd.Timestamp(rules.prospective.after)] = rules.prospective.cohort
        else:
            cohort[df[col].astype(str) == str(rules.prospective.equals)] = rules.prospective.cohort

    if rules.column is not None:
        if rules.column not in df.columns:
            problems.append(Problem(source, "unknown column named by cohorts.column", column=rules.column))
        else:
            for i, v in enumerate(df[rules.column]):
                if cohort.iloc[i] is not None:
                    continue
                if pd.isna(v) or not is_cohort_name(v):
                    problems.append(Problem(source, f"cohort '{v}' is not one of training, internal, test, "
                                            "prospective, external*", row=sheet_row(i), column=rules.column))
                else:
                    cohort.iloc[i] = str(v)
    else:
        split = rules.split
        has_center = "center" in df.columns
        center = df["center"] if has_center else pd.Series("", index=df.index)  # no column: one centre
        if not has_center and (split.centers or rules.external):
            problems.append(Problem(source, "no 'center' column, but the cohort rules name centres (cohorts.split."
                                    "centers / cohorts.external): add a center column, or leave split.centers out "
                                    "for a single-centre study", column="center"))
        in_split = (center.isin(split.centers) if split.centers else pd.Series(True, index=df.index)) & cohort.isna()
        unknown = set(split.centers) - set(center.dropna()) if has_center else set()
        for c in sorted(unknown):
            problems.append(Problem(source, f"centre '{c}' named by cohorts.split has no patient", column="center"))
        rng = np.random.default_rng(cfg.seed)
        strata = _strata(df, cfg) if split.stratify else pd.Series("all", index=df.index)
        # cohorts in canonical order: the split must not depend on the order of the study file's keys
        ratio = {k: split.ratio[k] for k in canonical_order(split.ratio)}
        rows = np.flatnonzero(in_split.to_numpy())
        group_col = cfg.data.patient_column
        if group_col is not None and group_col in df.columns:
            # lesion-level rows: split whole patients, each stratified by its worst outcome (any positive / event)
            groups = df[group_col].astype(str).to_numpy()[rows]
            keys, inverse = np.unique(groups, return_inverse=True)
            gstrata = pd.Series(strata.to_numpy()[rows]).groupby(inverse).max().to_numpy()
            for name, members in stratified_split(np.arange(len(keys)), gstrata, ratio, rng).items():
                cohort.iloc[rows[np.isin(inverse, members)]] = name
        else:
            for name, members in stratified_split(rows, strata[in_split].to_numpy(), ratio, rng).items():
                cohort.iloc[members] = name
        rest = cohort.isna()
        cohort[rest] = center[rest].map(lambda c: rules.external.get(c, "external"))
        for c in sorted(set(rules.external) - set(center.dropna())) if has_center else []:
            problems.append(Problem(source, f"centre '{c}' named by cohorts.external has no patient", column="center"))
    problems += _patients_in_one_cohort(df, cohort, cfg, source)
    out = pd.Series(cohort.to_numpy(), index=df["patient_id"].to_numpy(), name="cohort")
    if rules.require_training and not (out == "training").any():
        problems.append(Problem(source, "no patient is in the training cohort", column=rules.column))
    return out, problems


def _patients_in_one_cohort(df: pd.DataFrame, cohort: pd.Series, cfg: StudyConfig, source: str) -> list[Problem]:
    """Lesion-level studies (``data.patient_column``): every row of a patient in one cohort."""
    col = cfg.data.patient_column
    if col is None:
        return []
    if col not in df.columns:
        return [Problem(source, "unknown column named by data.patient_column (the column naming each lesion's "
                                "patient)", column=col)]
    problems = []
    missing = df[col].isna().to_numpy()
    for i in np.flatnonzero(missing):
        problems.append(Problem(source, "missing patient (data.patient_column)", row=sheet_row(i), column=col))
    per = pd.DataFrame({"patient": df[col].astype(str), "cohort": cohort.astype(str)})[~missing]
    n = per.groupby("patient").cohort.nunique()
    for patient in n[n > 1].index:
        where = per[per.patient == patient]
        problems.append(Problem(source, f"patient '{patient}' has rows in {n[patient]} cohorts "
                                f"({', '.join(sorted(where.cohort.unique()))}): a patient's lesions must stay in one "
                                "cohort", row=sheet_row(int(where.index[1])), column=col))
    return problems


def stratified_split(items: np.ndarray, strata: np.ndarray, ratio: dict[str, float],
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Split ``items`` into parts of exactly :func:`split_counts` sizes, each stratum spread
    proportionally (within one item) by systematic sampling over a random order."""
    position = np.empty(len(items))
    for s in sorted(set(strata.tolist())):
        idx = np.flatnonzero(strata == s)
        order = rng.permutation(len(idx))
        position[idx[order]] = (np.arange(len(idx)) + rng.uniform()) / len(idx)
    ranked = items[np.argsort(position, kind="stable")]
    parts, start = {}, 0
    for name, k in split_counts(len(items), ratio).items():
        parts[name] = np.sort(ranked[start:start + k])
        start += k
    return parts


def _strata(df: pd.DataFrame, cfg: StudyConfig) -> pd.Series:
    col = cfg.outcome.label if cfg.outcome.kind == "binary" else cfg.outcome.event
    if col not in df.columns:
        return pd.Series(0, index=df.index)
    return df[col].fillna(-1).astype(str)


def grouped_fold_ids(groups, nfolds: int, seed: int) -> np.ndarray | None:
    """Cross-validation folds (1-based, as R's ``foldid``) that keep each group's rows together:
    the groups (patients of a lesion-level study) are dealt round-robin into ``nfolds`` folds in
    a seeded random order, so folds hold about as many patients each. ``None`` when every group
    has one row (a patient-level study: the solver's own balanced folds apply)."""
    groups = np.asarray(groups).astype(str)
    keys, inverse = np.unique(groups, return_inverse=True)
    if len(keys) == len(groups):
        return None
    if len(keys) < nfolds:
        raise ValueError(f"{len(keys)} patients cannot fill {nfolds} cross-validation folds")
    rng = np.random.default_rng(seed)
    fold_of_group = (np.arange(len(keys)) % nfolds + 1)[rng.permutation(len(keys))]
    return fold_of_group[inverse]
