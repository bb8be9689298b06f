"""The ``harmonize:`` section of the study file: ComBat across centres before the signatures
(:mod:`gastrorad.models.harmonize`; docs/how-to/harmonisation.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class HarmonizeConfig(BaseModel):
    """Multi-centre harmonisation of the image features (ComBat, Johnson et al. 2007 as
    ``sva::ComBat``), fitted on the training cohort by the clinical table's ``center`` column and
    applied to every cohort before the ICC screen and the LASSO of each signature."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    method: Literal["none", "combat"] = Field("none", description=(
        "none: features as extracted; combat: empirical-Bayes location/scale adjustment per centre, fitted on "
        "the training patients."))
    parametric: bool = Field(True, description=(
        "true: parametric priors (sva's par.prior = TRUE, normal / inverse gamma); false: the non-parametric "
        "priors (par.prior = FALSE), slower, for features far from normal."))
    covariates: list[str] = Field(default_factory=list, description=(
        "Clinical columns whose effect on the features ComBat keeps (e.g. T stage, when centres differ in case "
        "mix); never the outcome (refused), nor the centre. Text columns and clinical.categorical ones are "
        "levels; missing values take the training median / most frequent level."))
    apply_to: list[Literal["deep", "handcrafted"]] = Field(
        default_factory=lambda: ["deep", "handcrafted"],
        description="Feature tables harmonised: deep (features_<phase>.csv) and/or handcrafted "
                    "(radiomics_<phase>.csv).")
    new_centre_min: int = Field(20, ge=2, description=(
        "Patients a centre unseen in training needs to be adapted label-free from its own features (an external "
        "cohort here, a new centre in a `gastrorad predict` batch); fewer: left as they are, with a warning."))
    unseen_centres: Literal["adapt", "training"] = Field("adapt", description=(
        "adapt: a centre absent from training with >= new_centre_min patients gets its own location/scale, "
        "estimated from its features without the outcome (report it: TRIPOD+AI data preparation); training: "
        "never adapt, unseen centres are left as they are (the training centres' reference)."))

    @field_validator("covariates")
    @classmethod
    def _no_centre(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if c in ("center", "patient_id", "cohort")]
        if bad:
            raise ValueError(f"harmonize.covariates: '{bad[0]}' cannot be a covariate (ComBat adjusts for the "
                             "centre; a covariate is a clinical column whose effect is kept)")
        if len(set(v)) != len(v):
            raise ValueError("harmonize.covariates: a column is listed twice")
        return v

    @property
    def enabled(self) -> bool:
        return self.method != "none"
