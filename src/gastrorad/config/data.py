"""The study file's inputs and labels: ``data:`` (the image manifest, the clinical table, remote
storage), ``outcome:`` (a binary label or survival time/event, with extra survival outcomes)
and ``cohorts:`` (a cohort column, or a seeded split of centres, external centres and a
prospective rule).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from gastrorad.config.base import Strict

#: Option names refused in ``data.storage_options`` (``key``, ``secret``, ``token``, ``password``, ...).
_CREDENTIAL_WORDS = ("key", "secret", "token", "password", "credential", "sas", "connection_string")


class DataConfig(Strict):
    """Input tables: the image manifest and the clinical table (paths relative to the study file)."""

    manifest: Path | None = Field(None, description="Image manifest (CSV, Parquet or XLSX), one row per image "
                                  "instance; none: a clinical-only study (no image stage, the clinical model alone).")
    clinical: Path = Field(description="Clinical table (CSV, Parquet or XLSX), one row per patient (or per lesion, "
                                       "with patient_column): the outcome, the centre and the clinical variables.")
    patient_column: str | None = Field(None, description=(
        "Lesion-level studies (several lesions per patient, each its own row with its own patient_id): the "
        "clinical column naming the patient each row belongs to. Cohort splits, cross-validation folds and "
        "bootstrap resamples then keep a patient's rows together, so no patient is ever in two cohorts."))
    truth: Path | None = Field(None, description="Optional truth table of a synthetic study (oracle figures only).")
    remote_cache: Path | None = Field(None, description=(
        "Local copies of images and masks the manifest gives as URLs (s3://, gs://, file://, ...); "
        "default <output>/cache/remote."))
    storage_options: dict[str, dict[str, Any]] = Field(default_factory=dict, description=(
        "fsspec options per URL protocol, e.g. {s3: {endpoint_url: 'http://minio:9000'}}. Credentials come "
        "from the environment or fsspec's configuration, never from the study file."))

    @field_validator("storage_options")
    @classmethod
    def _no_credentials(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for protocol, options in v.items():
            for name in options:
                if any(word in name.lower() for word in _CREDENTIAL_WORDS):
                    raise ValueError(f"storage_options.{protocol}.{name} looks like a credential; the study file is "
                                     "copied into run folders and bundles, so give credentials in the environment "
                                     "(e.g. AWS_ACCESS_KEY_ID, GOOGLE_APPLICATION_CREDENTIALS) or fsspec's config")
        return v


class SurvivalColumns(Strict):
    time: str = Field(description="Clinical column of this outcome's time (non-negative, in outcome.time_unit).")
    event: str = Field(description="Clinical column of its event indicator (1 = event, 0 = censored).")
    name: str = Field("os", description="Name of this outcome in the risk-group table (HR and log-rank in the "
                                        "primary model's risk groups) and its Kaplan-Meier figures "
                                        "(km_<name>_<cohort>).")


class OutcomeConfig(Strict):
    """The outcome modelled: a binary label, or a survival time and event, read from the clinical table."""

    kind: Literal["binary", "survival"] = Field(description="binary: 0/1 label; survival: time and event.")
    label: str = Field("label", description="Binary outcome column (1 = the outcome of interest, e.g. resistance).")
    time: str = Field("time", description="Survival time column (non-negative).")
    event: str = Field("event", description="Event indicator column (1 = event, 0 = censored).")
    time_unit: Literal["days", "weeks", "months", "years"] = Field("months", description=(
        "Unit of the survival times, used to label axes, tables and the model card; times are not converted, so "
        "every horizon (training.horizon, fusion.horizon, evaluation.horizons) is given in this unit."))
    extra_survival: list[SurvivalColumns] = Field(
        default_factory=list, description="Further time/event pairs analysed alongside (e.g. OS in S2).")

    @property
    def columns(self) -> list[str]:
        cols = [self.label] if self.kind == "binary" else [self.time, self.event]
        for extra in self.extra_survival:
            cols += [extra.time, extra.event]
        return cols


class SplitRule(Strict):
    centers: list[str] = Field(default_factory=list, description="Centres whose patients are split at random; "
                               "empty: every patient (a single-centre study, no 'center' column needed).")
    ratio: dict[str, float] = Field(default_factory=lambda: {"training": 7.0, "internal": 3.0},
                                    description="Cohort name -> share (e.g. training 7, internal 3).")
    stratify: bool = Field(True, description="Keep the outcome balance (binary label or event) in each part.")

    @field_validator("ratio")
    @classmethod
    def _ratio(cls, v: dict[str, float]) -> dict[str, float]:
        if "training" not in v:
            raise ValueError("the split must produce a 'training' cohort")
        if any(x <= 0 for x in v.values()):
            raise ValueError("split shares must be positive")
        return v


class ProspectiveRule(Strict):
    column: str = Field(description="Clinical column that marks prospective patients (a date or a flag).")
    after: str | None = Field(None, description="Patients with a date on or after this (YYYY-MM-DD) are prospective.")
    equals: Any = Field(None, description="Or: patients whose column equals this value are prospective.")
    cohort: str = Field("prospective", description="Cohort the prospective patients are put in (the rule is "
                                                   "applied first, before the column or the split).")

    @model_validator(mode="after")
    def _one_rule(self) -> "ProspectiveRule":
        if (self.after is None) == (self.equals is None):
            raise ValueError("give exactly one of 'after' (a date) or 'equals' (a value)")
        return self


class CohortConfig(Strict):
    """Which cohort each patient belongs to: a cohort column, or a seeded split of named centres plus the external
    centres and an optional prospective rule."""

    column: str | None = Field(None, description="Take each patient's cohort from this clinical column (no rule).")
    split: SplitRule | None = Field(None, description="Random split of named centres (seeded, stratified).")
    external: dict[str, str] = Field(default_factory=dict,
                                     description="Centre -> cohort name for centres outside the split; "
                                                 "unlisted centres become 'external'.")
    prospective: ProspectiveRule | None = Field(None, description="Patients set apart as a prospective cohort.")
    require_training: bool = Field(True, description="A study needs training patients; false only when a locked "
                                                     "model is applied (gastrorad predict).")

    @model_validator(mode="after")
    def _column_or_rule(self) -> "CohortConfig":
        if self.column is None and self.split is None:
            raise ValueError("give either 'column' or a 'split' rule")
        if self.column is not None and (self.split is not None or self.external):
            raise ValueError("'column' and a rule ('split'/'external') exclude each other")
        return self
