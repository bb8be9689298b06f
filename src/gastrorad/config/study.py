"""Typed study configuration loaded from YAML.

Every field has a documented default, and any key the schema does not know is an error
(a misspelt ``windw:`` must not silently fall back to a default). Relative paths are
resolved against the study file's folder.

A minimal study file::

    name: my_study
    data:
      manifest: manifest.csv
      clinical: clinical.csv
    outcome:
      kind: binary            # or survival
      label: label
    cohorts:
      split: {centers: [A], ratio: {training: 7, internal: 3}}
      external: {B: external1, C: external2}
    preprocess:
      window: {low: -350, high: 450}
      patch: {mode: stack25d, size: [224, 224], context_slices: 5, mask_channel: true}

The sections are defined by concern in the sibling modules, and re-exported here so
``from gastrorad.config.study import ...`` finds every one: :mod:`~gastrorad.config.base`
(``Strict``, ``COHORT_NAMES``, ``POOLINGS``), :mod:`~gastrorad.config.data` (``data``, ``outcome``,
``cohorts``), :mod:`~gastrorad.config.preprocess` (``preprocess``: window, patch modes),
:mod:`~gastrorad.config.training` (``model``, ``augment``, ``training``), :mod:`~gastrorad.config.signatures`
(``features``, ``radiomics``, ``signature``), :mod:`~gastrorad.config.modelling` (``clinical``, ``fusion``,
``evaluation``, ``report``), :mod:`~gastrorad.config.longitudinal`, :mod:`~gastrorad.config.compute` and
:mod:`~gastrorad.config.harmonize`. This module keeps :class:`StudyConfig` (with the checks that span
sections) and :func:`load_study`.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field, ValidationError, model_validator

from gastrorad.config.base import COHORT_NAMES, POOLINGS, Strict
from gastrorad.config.compute import ComputeConfig
from gastrorad.config.data import CohortConfig, DataConfig, OutcomeConfig, ProspectiveRule, SplitRule, SurvivalColumns
from gastrorad.config.harmonize import HarmonizeConfig
from gastrorad.config.longitudinal import LongitudinalConfig
from gastrorad.config.modelling import ClinicalConfig, EvaluationConfig, FusionConfig, ReportConfig, SelectionConfig
from gastrorad.config.preprocess import (BBoxPatch, PatchConfig, PreprocessConfig, RoiSlicesPatch, Slice2DPatch,
                                         SlicesPatch, Stack25DPatch, Volume3DPatch, WindowConfig)
from gastrorad.config.signatures import FeaturesConfig, RadiomicsConfig, SignatureConfig
from gastrorad.config.training import (AugmentConfig, DistillConfig, EarlyStoppingConfig, ModelConfig,
                                       TrainingConfig)
from gastrorad.errors import InputError, Problem

__all__ = [
    # defined here
    "StudyConfig", "deep_merge", "load_study",
    # re-exported from the section modules (their historical home is this module)
    "COHORT_NAMES", "POOLINGS", "Strict",
    "DataConfig", "SurvivalColumns", "OutcomeConfig", "SplitRule", "ProspectiveRule", "CohortConfig",
    "WindowConfig", "Slice2DPatch", "Stack25DPatch", "Volume3DPatch", "BBoxPatch", "SlicesPatch", "RoiSlicesPatch",
    "PatchConfig", "PreprocessConfig",
    "ModelConfig", "AugmentConfig", "DistillConfig", "EarlyStoppingConfig", "TrainingConfig",
    "FeaturesConfig", "RadiomicsConfig", "SignatureConfig",
    "SelectionConfig", "ClinicalConfig", "FusionConfig", "EvaluationConfig", "ReportConfig",
    "LongitudinalConfig", "ComputeConfig", "HarmonizeConfig",
]


class StudyConfig(Strict):
    name: str = Field("study", description="Study name: in the report title (unless report.title), the run "
                                           "records (run.json, metrics.json) and the model bundle's card.")
    seed: int = Field(42, description="Seed of every random step (splits, training, bootstrap).")
    data: DataConfig
    outcome: OutcomeConfig
    cohorts: CohortConfig
    clinical: ClinicalConfig = Field(default_factory=ClinicalConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    signature: SignatureConfig = Field(default_factory=SignatureConfig)
    radiomics: RadiomicsConfig = Field(default_factory=RadiomicsConfig)
    harmonize: HarmonizeConfig = Field(default_factory=HarmonizeConfig, description=(
        "Multi-centre harmonisation (ComBat) of deep and handcrafted features before the signatures."))
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    longitudinal: LongitudinalConfig | None = Field(None, description="S3: LDLM / TDLM over lesions x time points.")
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    output: Path = Field(Path("runs/study"), description="Run folder.")
    base_dir: Path = Field(Path("."), exclude=True, description="Folder of the study file (set by load_study).")
    profile: str | None = Field(None, exclude=True, description="Profile applied by load_study (e.g. 'fast').")

    @property
    def has_clinical(self) -> bool:
        """The study has clinical variables (else it is image-only)."""
        return bool(self.clinical.variables)

    @property
    def has_images(self) -> bool:
        """The study has an image manifest (else it is clinical-only)."""
        return self.data.manifest is not None

    def signature_columns(self) -> list[str] | None:
        """Columns of the signature table this study will have (None: known only after scoring, S3)."""
        if not self.has_images:
            return []
        if self.longitudinal is not None:
            return None
        cols = (["dl_score"] if self.signature.method == "dl_probability"
                else [f"rad_{p}" for p in self.preprocess.phases])
        if self.radiomics.enabled:
            cols += [f"hcr_{p}" for p in self.preprocess.phases]
        return cols

    @model_validator(mode="after")
    def _shape_defaults(self) -> "StudyConfig":
        """Defaults that depend on the study's shape: an image-only study (no clinical variables) gets
        the image signatures and their fusion, a nomogram of it and the handcrafted reference; then the
        models, the nomogram and the reference are checked against what this study can have, so a
        model that cannot exist fails here, not after minutes of image work."""
        fusion, ev = self.fusion, self.evaluation
        if not self.has_clinical and not self.has_images:
            raise ValueError("nothing to model: no image manifest (data.manifest) and no clinical variables "
                             "(clinical.variables)")
        if not self.has_images:
            if "models" not in fusion.model_fields_set:
                fusion.models = {"clinical": ["clinical"]}
            if "nomogram" not in fusion.model_fields_set:
                fusion.nomogram = "clinical"
        elif not self.has_clinical:
            if "models" not in fusion.model_fields_set:
                fusion.models = {"image": ["signature"]}
            if "nomogram" not in fusion.model_fields_set:
                fusion.nomogram = "image"
            if "reference" not in ev.model_fields_set:
                ev.reference = "handcrafted" if self.radiomics.enabled and self.longitudinal is None else None
        problems = []
        sig_cols = self.signature_columns()
        variables = set(self.clinical.variables)
        for name, ingredients in fusion.models.items():
            if not ingredients:
                problems.append(f"fusion.models.{name}: no ingredient (give 'signature', 'clinical' or column names)")
            for ing in ingredients:
                if ing == "clinical" and not variables:
                    problems.append(f"fusion.models.{name}: ingredient 'clinical' needs clinical variables, and "
                                    "clinical.variables is empty (an image-only study): drop 'clinical' from the "
                                    "model or list the clinical variables")
                elif ing == "signature" and not self.has_images:
                    problems.append(f"fusion.models.{name}: ingredient 'signature' needs images, and this study has "
                                    "no image manifest (a clinical-only study): drop 'signature' or give "
                                    "data.manifest")
                elif ing in ("clinical", "signature") or sig_cols is None or ing in variables or ing in sig_cols:
                    continue
                else:
                    problems.append(f"fusion.models.{name}: unknown ingredient '{ing}': not 'clinical', 'signature', "
                                    f"a clinical variable ({', '.join(sorted(variables)) or 'none listed'}) or a "
                                    f"signature column of this study ({', '.join(sig_cols)})")
        for key, model in [("fusion.nomogram", fusion.nomogram)] + [("fusion.extra_nomograms", m)
                                                                     for m in fusion.extra_nomograms]:
            if model is not None and model not in fusion.models:
                problems.append(f"{key}: '{model}' is not one of the fusion models ({', '.join(fusion.models)}); "
                                "name one of them, or null for no nomogram")
        ref = ev.reference
        if ref is not None and ref not in fusion.models and ref != "handcrafted" and \
                (sig_cols is not None and ref not in sig_cols):
            problems.append(f"evaluation.reference: '{ref}' is neither a fusion model ({', '.join(fusion.models)}), "
                            f"'handcrafted' nor a signature column ({', '.join(sig_cols)}); null compares with the "
                            "first model")
        if ref == "handcrafted" and (not self.radiomics.enabled or self.longitudinal is not None or
                                     not self.has_images):
            problems.append("evaluation.reference: 'handcrafted' needs the handcrafted radiomics reference "
                            "(radiomics.enabled: true, not a longitudinal study)")
        if self.outcome.kind == "survival" and fusion.horizon is None and "cutoff" not in fusion.model_fields_set:
            fusion.cutoff = "median"  # a Youden cut-off (the default) reads status at a horizon this study lacks
        if self.outcome.kind == "survival" and fusion.cutoff == "youden" and fusion.horizon is None:
            problems.append("fusion.cutoff: a Youden cut-off on a survival outcome needs fusion.horizon (the time "
                            "at which status is read), or use cutoff: median / fixed")
        if fusion.cutoff == "fixed" and fusion.cutoff_value is None:
            problems.append("fusion.cutoff: 'fixed' needs fusion.cutoff_value")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _harmonize_not_outcome(self) -> "StudyConfig":
        """ComBat keeps the effect of its covariates: the outcome among them would carry the label into
        the features of every cohort (a leak), so it is refused at load."""
        leak = [c for c in self.harmonize.covariates if c in self.outcome.columns]
        if leak:
            raise ValueError(f"harmonize.covariates: '{leak[0]}' is an outcome column; ComBat covariates are "
                             "clinical variables whose effect is kept, never the outcome (it would leak the label "
                             "into the harmonised features)")
        return self

    @model_validator(mode="after")
    def _val_cohort_exists(self) -> "StudyConfig":
        name = self.training.val_cohort
        if name is None:
            return self
        if self.longitudinal is not None:
            raise ValueError("training.val_cohort is not supported for the longitudinal models (they validate on "
                             "a hold-out of training)")
        if self.cohorts.column is None:  # the rules name every cohort; a cohort column is checked at training
            c = self.cohorts
            known = {*c.split.ratio, *c.external.values(), "external"} | ({c.prospective.cohort} if c.prospective
                                                                             else set())
            if name not in known:
                raise ValueError(f"training.val_cohort: no cohort '{name}' in this study (cohorts: "
                                 f"{', '.join(sorted(known))})")
        return self

    @property
    def resample_jobs(self) -> int:
        """Parallel jobs of the resampling statistics: ``compute.workers``, else
        ``preprocess.workers`` (results do not depend on it; small problems stay serial)."""
        return self.compute.workers or self.preprocess.workers

    def resolve(self, path: Path | None) -> Path | None:
        if path is None:
            return None
        return path if path.is_absolute() else (self.base_dir / path)

    @property
    def manifest_path(self) -> Path | None:
        return self.resolve(self.data.manifest)  # None: a clinical-only study

    @property
    def clinical_path(self) -> Path:
        return self.resolve(self.data.clinical)

    @property
    def output_dir(self) -> Path:
        return self.resolve(self.output)

    @property
    def cache_dir(self) -> Path:
        return self.resolve(self.preprocess.cache_dir) or self.output_dir / "cache" / "patches"

    @property
    def remote_cache_dir(self) -> Path:
        return self.resolve(self.data.remote_cache) or self.output_dir / "cache" / "remote"


def deep_merge(base: dict, patch: dict) -> dict:
    """``patch`` laid over ``base``: mappings merge key by key, anything else replaces. A
    mapping that names another ``mode`` (e.g. a profile's ``patch: {mode: slice2d, ...}`` over a
    ``stack25d`` patch) replaces the base one whole: the other mode's keys do not apply."""
    if "mode" in patch and "mode" in base and patch["mode"] != base["mode"]:
        return dict(patch)
    out = dict(base)
    for k, v in patch.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_study(path: str | Path, *, profile: str | None = None, overrides: dict | None = None) -> StudyConfig:
    """Load and validate a study file; raise :class:`InputError` listing every problem.

    A study file may carry ``profiles:`` (name -> a partial study file); ``profile`` lays
    that one over the rest (e.g. the ``fast`` CPU profile of a recipe). ``overrides`` (a
    partial study file, e.g. ``{"data": {...}, "output": ...}``) is laid over last.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(Problem(str(path), "study file does not exist"))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(Problem(str(path), f"not valid YAML: {exc}")) from exc
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise InputError(Problem(str(path), f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} on line {line}); "
                                 "save the study file as UTF-8", row=line)) from None
    except (IsADirectoryError, PermissionError) as exc:
        raise InputError(Problem(str(path), f"cannot read the study file: {exc.strerror}")) from None
    if not isinstance(raw, dict):
        raise InputError(Problem(str(path), "a study file must be a mapping of sections"))
    for key in ("base_dir", "profile"):
        if key in raw:
            raise InputError(Problem(str(path), "unknown key", column=key))
    profiles = raw.pop("profiles", None) or {}
    if not isinstance(profiles, dict):
        raise InputError(Problem(str(path), "profiles must map a name to a partial study file", column="profiles"))
    if profile is not None:
        if profile not in profiles:
            raise InputError(Problem(str(path), f"no profile '{profile}' (defined: {sorted(profiles) or 'none'})",
                                     column="profiles"))
        raw = deep_merge(raw, profiles[profile] or {})
    if overrides:
        raw = deep_merge(raw, overrides)
    try:
        cfg = StudyConfig.model_validate({**raw, "base_dir": path.resolve().parent, "profile": profile})
    except ValidationError as exc:
        raise InputError([Problem(str(path), _reason(err), column=".".join(str(p) for p in err["loc"]))
                          for err in exc.errors()]) from exc
    return cfg


def _reason(err: dict) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key (check its spelling and section)"
    if err["type"] == "missing":
        return "required key is missing"
    return err["msg"]
