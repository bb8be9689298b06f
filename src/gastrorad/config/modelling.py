"""The study file's statistical-modelling sections: ``clinical:`` (clinical variables, their coding
and ``clinical.selection``, the factor selection on training), ``fusion:`` (fusion models, risk
cut-off, nomograms), ``evaluation:`` (what is computed on every cohort) and ``report:`` (the
HTML report). The checks that need the whole study (ingredients, reference) are on StudyConfig.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gastrorad.config.base import Strict


class SelectionConfig(Strict):
    """Clinical factor selection, on the training cohort only."""

    screen_p: float | None = Field(0.05, description="Univariable screen: keep terms with LR P below this "
                                                     "(null: no screen).")
    method: Literal["stepwise_aic", "lasso", "none"] = Field(
        "stepwise_aic", description="Multivariable step: backward AIC (MASS::stepAIC), or LASSO with CV lambda "
                                    "(glmnet, S2) whose non-zero terms are refitted without penalty.")
    lambda_rule: Literal["min", "1se"] = Field("min", description=(
        "method: lasso: the lambda whose non-zero terms are kept, min (cv.glmnet's lambda.min, lowest CV deviance) "
        "or 1se (lambda.1se, the largest lambda within one SE of it: fewer terms)."))
    nfolds: int = Field(10, ge=3, description="Cross-validation folds of the LASSO (cv.glmnet's nfolds), seeded; "
                                              "a patient's lesions stay in one fold.")


class ClinicalConfig(Strict):
    """Clinical variables of the clinical model: their coding, missing values and the factor selection on
    training."""

    variables: list[str] = Field(default_factory=list, description="Candidate clinical variables; none: an "
                                 "image-only study (no clinical model; the image signatures and their fusion).")
    categorical: list[str] = Field(default_factory=list, description="Variables to treat as categorical.")
    reference: dict[str, str] = Field(default_factory=dict, description="Reference level per categorical variable.")
    ordinal: dict[str, list] = Field(default_factory=dict, description="Ordered levels per ordinal variable.")
    groups: dict[str, dict[str, list]] = Field(default_factory=dict,
                                               description="Level grouping, e.g. ct: {T2+3: [T2, T3], T4: [T4a, T4b]}.")
    missing: Literal["impute", "drop"] = Field("impute", description="Training median/mode imputation, or drop.")
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    units: dict[str, str] = Field(default_factory=dict, description="Unit of each numeric variable as the table holds "
                                  "it (e.g. age: years, cea: ng/mL); shown in the model card and the serve form.")

    @model_validator(mode="after")
    def _units_of_variables(self) -> "ClinicalConfig":
        unknown = sorted(set(self.units) - set(self.variables)) if self.variables else []
        if unknown:
            raise ValueError(f"units given for {unknown}, which are not among the clinical variables {self.variables}")
        return self


class FusionConfig(Strict):
    """Fusion models (``gastrorad fit``): each a list of ingredients, fitted on training."""

    models: dict[str, list[str]] = Field(
        default_factory=lambda: {"clinical": ["clinical"], "integrated": ["signature", "clinical"]},
        description="Model name -> ingredients: 'clinical' (selected clinical terms), 'signature' (every signature), "
                    "or column names of the signature table. Default by the study's shape: with images and "
                    "clinical variables {clinical: [clinical], integrated: [signature, clinical]}; image-only "
                    "{image: [signature]}; clinical-only {clinical: [clinical]}.")
    cutoff: Literal["youden", "median", "fixed"] = Field("youden", description="Risk-group cut-off locked on "
                                                         "training; a survival study without fusion.horizon "
                                                         "defaults to median.")
    cutoff_value: float | None = Field(None, description=(
        "cutoff: fixed: the cut-off itself, on each fusion model's scale (predicted probability, or the Cox linear "
        "predictor); signatures evaluated as models then use Youden (binary) or the training median (survival)."))
    horizon: float | None = Field(None, description="Survival: horizon of the Youden cut-off (outcome time units).")
    nomogram: str | None = Field("integrated", description="Model drawn as a nomogram (the primary model of the "
                                                            "report). Default by the study's shape: integrated, "
                                                            "image (image-only) or clinical (clinical-only).")
    extra_nomograms: list[str] = Field(default_factory=list, description="Further models drawn as nomograms "
                                       "(S3: the variant without TDLM).")
    nomogram_horizons: list[float] = Field(default_factory=list, description="Cox nomogram: survival horizons.")
    prevalidate: bool = Field(True, description="Fit fusion models on each signature's pre-validated training "
                              "values (out-of-fold: cv.glmnet's fit.preval at the chosen lambda; for a k-fold "
                              "trained network, the fold model that held the patient out), not its in-sample ones, "
                              "which overstate it next to clinical terms. A signature without them (a network "
                              "trained on one split) is used in-sample, and fit.json says so.")


class EvaluationConfig(Strict):
    """What ``gastrorad evaluate`` computes on every cohort (cut-offs come locked from training)."""

    reference: str | None = Field("clinical", description="Model every other is compared with (DeLong P, NRI/IDI, "
                                                          "C-index difference): a fusion model, 'handcrafted' (the "
                                                          "handcrafted radiomics signature) or a signature column; "
                                                          "null: the first model. Default: clinical, or handcrafted "
                                                          "in an image-only study.")
    signatures: bool = Field(True, description="Evaluate each image signature as a model of its own (DL signature).")
    bootstrap: int = Field(200, ge=0, description="Resamples for ROC bands and decision-curve bands (0 = none).")
    horizons: list[float] = Field(default_factory=list, description="Survival: horizons of time-dependent AUC, "
                                  "calibration and decision curves (default: fusion.horizon, else 12).")
    nri_categories: list[float] | None = Field(None, description="Risk cut-points of a categorical NRI "
                                               "(null: category-free NRI).")
    calibration_groups: int = Field(10, ge=2, description="Groups of the calibration curve and Hosmer-Lemeshow test.")
    subgroups: list[str] = Field(default_factory=list, description="Clinical columns whose levels get their own "
                                 "AUC / C-index per cohort (S2: chemotherapy).")


class ReportConfig(Strict):
    """The HTML report (``gastrorad report``)."""

    title: str | None = Field(None, description="Report title (default: the study name).")
    gradcam: int = Field(6, ge=0, description="Grad-CAM overlays per cohort in the gallery (0 = no explain stage).")
    readers: dict[str, dict[str, float]] = Field(default_factory=dict, description=(
        "Clinicians' operating points drawn on the ROC (S4): name -> {sensitivity, specificity}."))
