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
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gastrorad.config.harmonize import HarmonizeConfig
from gastrorad.errors import InputError, Problem

COHORT_NAMES = ("training", "internal", "external", "prospective", "test")
#: Poolings of a stage's feature maps (implemented in :func:`gastrorad.dl.features.pool_stage`).
POOLINGS = ("avg", "max", "roi_avg", "roi_std", "roi_max", "roi_p10", "roi_p90")


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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


class WindowConfig(Strict):
    """A HU window as a range (low/high) or as level/width."""

    low: float | None = Field(None, description="Lower bound in HU (with high); lower values are clipped to it.")
    high: float | None = Field(None, description="Upper bound in HU (with low); higher values are clipped to it.")
    level: float | None = Field(None, description="Window centre in HU (with width): the range is level +/- width/2.")
    width: float | None = Field(None, description="Window width in HU (with level).")

    @model_validator(mode="after")
    def _one_form(self) -> "WindowConfig":
        as_range = self.low is not None and self.high is not None
        as_lw = self.level is not None and self.width is not None
        if as_range == as_lw:
            raise ValueError("give a window as low/high or as level/width (exactly one form)")
        if self.bounds[1] <= self.bounds[0]:
            raise ValueError("window high must exceed low (width > 0)")
        return self

    @property
    def bounds(self) -> tuple[float, float]:
        if self.low is not None and self.high is not None:
            return float(self.low), float(self.high)
        return float(self.level - self.width / 2), float(self.level + self.width / 2)


class _PatchBase(Strict):
    size: list[int] = Field(default_factory=lambda: [224, 224], description="Output size (H, W), or (D, H, W) for volume3d.")
    margin_mm: float = Field(10.0, ge=0, description="Context kept around the ROI when cropping before resampling.")


class Slice2DPatch(_PatchBase):
    """The largest-ROI slice, a square around the ROI centroid (S5: fixed 224 mm side)."""

    mode: Literal["slice2d"] = Field("slice2d", description="slice2d: one channel, the largest ROI slice (S5).")
    side_mm: float | None = Field(None, gt=0, description="Fixed square side in mm; default: from the ROI's extent.")
    square_scale: float = Field(1.0, gt=0, description="Side = scale x the ROI's larger in-plane extent (if no side_mm).")
    mask_channel: bool = Field(False, description="Add the ROI mask as a second channel (needed by the ROI poolings "
                                                  "of features.pooling).")


class Stack25DPatch(_PatchBase):
    """Largest slice +/- context_slices as channels, optional mask channel (S1: 11 + 1 = 12)."""

    mode: Literal["stack25d"] = Field("stack25d", description="stack25d: the largest ROI slice and its neighbours "
                                                              "as channels (S1).")
    context_slices: int = Field(5, ge=0, description="Slices taken above and below the largest one.")
    mask_channel: bool = Field(True, description="Add the largest slice's ROI mask as the last channel (S1: channel "
                                                 "12).")
    side_mm: float | None = Field(None, gt=0, description="Fixed square side in mm; default: from the ROI's extent.")
    square_scale: float = Field(1.0, gt=0, description="Side = scale x the ROI's larger in-plane extent on its "
                                                       "largest slice, plus margin_mm each side (if no side_mm).")


class Volume3DPatch(_PatchBase):
    """The VOI as a 3D block, or as its stack of square 2D slices (S2: 112x112 per slice)."""

    mode: Literal["volume3d"] = Field("volume3d", description="volume3d: the VOI as a 3D block, or its stack of "
                                                              "2D slices (S2).")
    as_slices: bool = Field(False, description="Return each VOI slice padded to square and resized (S2).")
    size: list[int] = Field(default_factory=lambda: [32, 112, 112], description=(
        "Block size [D, H, W] the VOI is resized to; with as_slices, [H, W] per slice (S2: 112 x 112), or "
        "[D, H, W] to also resample the stack to D slices."))
    mask_channel: bool = Field(False, description="Add the ROI mask as a second channel of the 3D block "
                                                  "(for ROI-pooled deep features; not with as_slices).")
    side_mm: float | None = Field(None, gt=0, description="Fixed block instead of the VOI: side_mm square in-plane "
                                                         "around the ROI's centroid (on its largest slice).")
    depth_mm: float | None = Field(None, gt=0, description="The fixed block's extent in z (default: side_mm).")

    @model_validator(mode="after")
    def _mask_needs_block(self) -> "Volume3DPatch":
        if self.mask_channel and self.as_slices:
            raise ValueError("volume3d: mask_channel needs the 3D block (as_slices: false)")
        if self.depth_mm is not None and self.side_mm is None:
            raise ValueError("volume3d: depth_mm needs side_mm (the fixed block's in-plane side)")
        return self


class BBoxPatch(_PatchBase):
    """Box scaled 1.5x, padded symmetrically to square, adjacent slices as channels (S3)."""

    mode: Literal["bbox"] = Field("bbox", description="bbox: the scaled lesion box and its neighbouring slices (S3).")
    box_scale: float = Field(1.5, gt=0, description="Factor on the lesion box's in-plane extent before it is padded "
                                                    "to its square (S3: 1.5).")
    context_slices: int = Field(1, ge=0, description="Slices above and below the box slice (1 -> 3 channels).")


class SlicesPatch(_PatchBase):
    """Every slice in the ROI's z-range (S4 slice-level training), each resized whole."""

    mode: Literal["slices"] = Field("slices", description="slices: every slice of the ROI's z-range, one sample "
                                                          "each (S4).")
    extra_slices: int = Field(0, ge=0, description="Extra slices kept above and below the ROI's z-range.")
    crop_to_body: bool = Field(True, description="Crop each slice to the body before resizing.")
    size: list[int] = Field(default_factory=lambda: [256, 256], description=(
        "Size (H, W) each whole slice is resized to (S4: 256 x 256, then augment.random_crop 224 x 224)."))


class RoiSlicesPatch(_PatchBase):
    """Every slice a 3D ROI covers, each a slice2d patch around its own ROI centroid with its own
    mask; a patient's deep features are the ROI-area-weighted mean over them."""

    mode: Literal["roi_slices"] = Field("roi_slices", description="roi_slices: every slice a 3D ROI covers, each "
                                                                  "a slice2d patch, one sample each.")
    side_mm: float | None = Field(None, gt=0, description="Fixed square side in mm; default: from the largest "
                                                         "slice's extent (one side for all of a patient's slices).")
    square_scale: float = Field(1.0, gt=0, description="Side = scale x the largest slice's ROI extent (if no side_mm).")
    mask_channel: bool = Field(True, description="Add each slice's own ROI mask as a second channel (needed by the "
                                                 "ROI poolings of features.pooling).")


PatchConfig = Annotated[Union[Slice2DPatch, Stack25DPatch, Volume3DPatch, BBoxPatch, SlicesPatch, RoiSlicesPatch],
                        Field(discriminator="mode")]


class PreprocessConfig(Strict):
    """Patch making (``gastrorad preprocess``): resampling, HU window, intensity scaling and the patch mode, for
    each phase."""

    phases: list[str] = Field(default_factory=lambda: ["venous"], description="Phases used; one patch set each.")
    spacing: list[float] | None = Field(default_factory=lambda: [1.0, 1.0, 1.0],
                                        description="Target spacing (x, y, z) in mm; null keeps the native grid.")
    interpolation: Literal["linear", "bspline", "nearest"] = Field("linear", description="Image interpolation (masks: nearest).")
    window: WindowConfig = Field(default_factory=lambda: WindowConfig(low=-350, high=450))
    windows_by_site: dict[str, WindowConfig] = Field(default_factory=dict,
                                                     description="Lesion site -> window (S3: lung, abdomen).")
    normalize: Literal["zscore", "minus_one_one", "zero_one", "none"] = Field("zscore", description=(
        "Intensity scaling after the window: zscore (patch mean 0, SD 1; S1, S5), minus_one_one (window to "
        "[-1, 1]; S2), zero_one (window to [0, 1]; S3, S4) or none (HU kept)."))
    patch: PatchConfig = Field(default_factory=Stack25DPatch)
    workers: int = Field(2, ge=1, description="Worker processes over patients.")
    cache_dir: Path | None = Field(None, description="Patch cache; default <output>/cache/patches.")

    @field_validator("spacing")
    @classmethod
    def _spacing(cls, v):
        if v is not None and (len(v) != 3 or any(s <= 0 for s in v)):
            raise ValueError("spacing needs three positive numbers (x, y, z) in mm")
        return v


class ModelConfig(Strict):
    """The deep model: a registered backbone (see ``gastrorad.dl.backbones``) and a head."""

    backbone: str = Field("resnet18", description="resnet10/18/34/50/101, densenet121/201, efficientnet_b0..b7, "
                                                  "efficientnet_lite0, seresnext50/101, vgg11/16, i3resnet152, "
                                                  "tiny (tests).")
    spatial_dims: Literal[2, 3] = Field(2, description="2 for slice/2.5D patches, 3 for volumes.")
    pretrained: Path | None = Field(None, description="Local weights file (never downloaded), or the name of "
                                                      "installed weights: 'astra' (backbone i3resnet152, extra "
                                                      "[astra]) or 'imagenet' (backbone efficientnet_lite0, extra "
                                                      "[imagenet]).")
    pretrained_format: Literal["torchvision", "medicalnet", "gastrorad", "merlin", "astra", "imagenet"] = Field(
        "torchvision", description="Layout of a local weights file: torchvision (ImageNet ResNets), medicalnet "
                                   "(3D ResNets), gastrorad (a checkpoint of this package), merlin (a Merlin "
                                   "checkpoint for i3resnet152).")
    freeze: str = Field("none", description="'none', 'all' (backbone frozen) or 'until:<layer>' (e.g. until:layer3).")
    head: Literal["linear", "mlp"] = Field("linear", description=(
        "On the average-pooled backbone features: linear (dropout, one linear layer) or mlp (linear to hidden, "
        "ReLU, dropout, linear; S2's new head)."))
    hidden: int = Field(256, ge=1, description="MLP head width.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the output layer (model noise in S4).")
    stochastic_depth: float = Field(0.0, ge=0, lt=1, description="Drop-connect rate (EfficientNet), model noise in S4.")


class AugmentConfig(Strict):
    """Training-time augmentation (MONAI transforms), applied to each patch with probability ``prob``."""

    prob: float = Field(0.5, ge=0, le=1, description="Probability with which each enabled random transform is "
                        "applied to a training patch, drawn independently (S3: 1.0); random_crop is always applied.")
    flip: bool = Field(False, description="Random flips along each in-plane axis (left/right, anterior/posterior).")
    rot90: bool = Field(False, description="Random rotations by 90/180/270 degrees in-plane.")
    rotate_degrees: float = Field(0.0, ge=0, description="Random rotation within +/- this angle.")
    gaussian_blur: float = Field(0.0, ge=0, description="Max Gaussian blur sigma (pixels); 0 = off.")
    scale: float = Field(0.0, ge=0, description="Random affine scale range (+/- fraction).")
    shift: float = Field(0.0, ge=0, description="Random affine shift range in pixels.")
    random_crop: list[int] | None = Field(None, description="Random crop size after resize (S4: [224, 224]); centre crop at inference.")


class DistillConfig(Strict):
    """Progressive Distill (S4): teacher, then students trained on the KD loss with model noise."""

    chain: list[str] = Field(default_factory=list, description="Backbones of the students (e.g. [efficientnet_b3, efficientnet_b7]).")
    iterations: int = Field(2, ge=1, description="Student generations when the chain is empty (same backbone).")
    temperature: float = Field(4.0, gt=0, description="Temperature T softening the teacher's and the student's "
                               "outputs in the KD term, weighted T^2 (1 - alpha) (seed 003, Eq. 1).")
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the label-smoothed CE term (seed 003, Eq. 1).")
    student_dropout: float = Field(0.2, ge=0, lt=1, description="Students' dropout before the output layer (model "
                                   "noise; in place of model.dropout).")
    student_stochastic_depth: float = Field(0.2, ge=0, lt=1, description="Students' drop-connect rate (EfficientNet "
                                            "stochastic depth, model noise; in place of model.stochastic_depth).")


class EarlyStoppingConfig(Strict):
    """Stop training once a validation metric stops improving, the same metric picking the checkpoint kept (null:
    every epoch is trained and the checkpoint is picked by val_loss)."""

    monitor: Literal["val_auc", "val_loss", "val_c"] = Field("val_loss", description=(
        "val_loss (the validation patients' cross-entropy or Cox partial likelihood, lower is better), val_auc "
        "(binary; read as val_c on a survival outcome) or val_c (Harrell's C-index, survival outcomes). The "
        "longitudinal models use val_c."))
    patience: int = Field(10, ge=1, description="Epochs without improvement of the monitored metric before "
                                                "training stops.")


class TrainingConfig(Strict):
    """Deep-model training (``gastrorad train``): loss, optimiser, schedule, early stopping, class balance, the
    patient score from patch scores, and the devices."""

    loss: Literal["bce", "ce", "cox", "bce_cox"] = Field("bce", description=(
        "The outcome kind decides: a binary outcome trains on cross-entropy of one logit (bce; ce, S4's two-class "
        "softmax, is the same loss), a survival one on the Cox partial likelihood (cox), plus with bce_cox the "
        "cross-entropy of 'event-free beyond horizon' (S3)."))
    horizon: float = Field(12.0, gt=0, description="bce_cox: the binary part is 'event-free beyond horizon' "
                                                   "(S3: OS > 12 months); patients censored before it are left out.")
    optimizer: Literal["adamw", "sgd"] = Field("adamw", description="adamw (torch AdamW) or sgd (with momentum).")
    lr: float = Field(1e-4, gt=0, description="Learning rate (its peak, after the warm-up).")
    weight_decay: float = Field(1e-4, ge=0, description="Weight decay (AdamW's decoupled decay; SGD's L2 penalty).")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (unused by adamw).")
    epochs: int = Field(100, ge=1, description="Maximum training epochs (early stopping may end sooner); the "
                                               "cosine schedule spans them.")
    batch_size: int = Field(32, ge=1, description="Samples per optimiser step, over all data-parallel processes "
                                                  "(each of N processes takes batch_size / N).")
    warmup_epochs: int = Field(0, ge=0, description="Epochs of linear learning-rate warm-up from near 0 to lr "
                                                   "(updated every step); 0 = none.")
    schedule: Literal["cosine", "constant"] = Field("cosine", description="After the warm-up: cosine (decay from lr "
                                                    "to 0 by the last epoch, every step) or constant (lr kept).")
    early_stopping: EarlyStoppingConfig | None = Field(default_factory=EarlyStoppingConfig)
    val_fraction: float = Field(0.2, ge=0, lt=1, description="Stratified hold-out of training for early stopping.")
    val_cohort: str | None = Field(None, description=(
        "Cohort that validates instead (early stopping, checkpoint selection), e.g. internal; every training "
        "patient is then fitted and val_fraction is unused. That cohort takes part in model selection, which the "
        "report states. Needs folds: 0. null: the val_fraction hold-out of training."))
    folds: int = Field(0, ge=0, description="k-fold CV inside training (S2); scores average the k models.")
    class_weights: bool = Field(False, description="Binary: weight the positive class's loss by negatives / "
                                                   "positives of the training samples (BCE pos_weight).")
    balanced_sampling: bool = Field(False, description="Binary: draw training samples with replacement so positives "
                                                       "and negatives are equally likely in each epoch.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="beta of seed 003's Eq. 3.")
    aggregate: Literal["mean", "max", "topk"] = Field("mean", description="Patient score from slice/patch scores.")
    top_k: int = Field(10, ge=1, description="aggregate: topk: the patient score is the mean of its k highest "
                                             "slice/patch scores (all of them when fewer; S4: 10).")
    pooling: Literal["max", "avg"] = Field("max", description="Global pooling of deep features (S5: max).")
    precision: str = Field("auto", description="'auto' (16-mixed on CUDA, 32 on CPU), '32', 'bf16-mixed', ...")
    accelerator: str = Field("auto", description="Lightning accelerator: 'auto' (CUDA when present, else CPU), "
                                                 "'cpu', 'gpu'.")
    devices: str = Field("auto", description=(
        "Devices per node: 'auto' (every GPU when CUDA is present, else one CPU process), a count ('2'), or GPU "
        "indices ('0,1'). More than one device trains with data-parallel processes (strategy)."))
    strategy: Literal["auto", "ddp_spawn", "ddp"] = Field("auto", description=(
        "Data-parallel training: 'auto' is one process for one device, else ddp_spawn; 'ddp_spawn' starts one "
        "process per device from this call (works inside `gastrorad run`, and with CUDA); 'ddp' when torchrun or SLURM srun started every "
        "process (multi-node: run `gastrorad train` that way, see the README)."))
    num_nodes: int = Field(1, ge=1, description="Machines taking part in the training (strategy 'ddp').")
    num_workers: int = Field(0, ge=0, description="Data-loader worker processes per training process (0: batches "
                                                  "are loaded in the training process).")
    distill: DistillConfig | None = None

    @model_validator(mode="after")
    def _val_cohort(self) -> "TrainingConfig":
        if self.val_cohort is not None:
            if self.val_cohort == "training":
                raise ValueError("training.val_cohort must name a cohort other than training")
            if self.folds:
                raise ValueError("training.val_cohort names one validation cohort and excludes k-fold training "
                                 "(training.folds must be 0)")
        return self


class SelectionConfig(Strict):
    """Clinical factor selection, on the training cohort only."""

    screen_p: float | None = Field(0.05, description="Univariable screen: keep terms with LR P below this (null: no screen).")
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


class FeaturesConfig(Strict):
    """Deep features (``gastrorad extract-features``, the frozen-feature path of S2/S5): which
    stages of the backbone are pooled and how. Cached per patch, keyed by the weights."""

    stages: Literal["last", "all"] = Field("last", description="'last' (the papers: the final feature maps) or "
                                           "'all' (every stage, shallow to deep, concatenated).")
    pooling: list[Literal[POOLINGS]] | None = Field(
        None, description="Poolings of each stage's maps: avg/max over the patch, or roi_avg/roi_std/roi_max/"
                          "roi_p10/roi_p90 (10th/90th percentile) "
                          "inside the ROI mask (needs a 'mask' patch channel). Default: [training.pooling].")
    batch_size: int = Field(32, ge=1, description="Patches per forward pass.")
    roi_erosion: int = Field(2, ge=0, description="ROI poolings use the ROI eroded by this many patch pixels: its "
                             "boundary ring is mostly partial volume with gas, fluid or fat.")
    mask_input: bool = Field(True, description="Feed the ROI mask channel to the network as an input (True), or "
                             "use it only to pool inside the ROI (False): then the whole-patch features do not "
                             "depend on the contour at all, and the ROI ones only through the pooling region.")
    seed: int | None = Field(None, description="Seed of a randomly initialised feature network (no pretrained "
                             "weights); default: the study's seed. The frozen random-feature path depends on it: "
                             "bench/deep_signal.py --net-seeds measures how much.")
    networks: int = Field(1, ge=1, le=64, description="Frozen random-feature path: this many independently seeded "
                          "copies of the network; their features are named n<k>_<stage>_... and, with "
                          "signature.bagging: network, one LASSO per network is fitted and the signatures averaged.")
    per_slice: bool = Field(False, description="stack25d patches with a mask channel: each CT slice, paired with the "
                            "ROI mask, is one sample through the network and the features are averaged over the "
                            "slices (texture estimated on several slices of the tumour instead of one).")
    tta: Literal["none", "dihedral"] = Field("none", description="dihedral: each patch also goes through the network "
                                             "rotated by 90, 180 and 270 degrees and mirrored (the 8 in-plane "
                                             "symmetries) and the pooled features are averaged: features that do "
                                             "not depend on how the tumour happens to be oriented (8x the compute).")


class RadiomicsConfig(Strict):
    """The handcrafted radiomics reference every study fits (``gastrorad radiomics``): IBSI
    first-order, shape and texture features (GLCM, GLRLM, GLSZM, GLDM, NGTDM) of the same ROI
    through PyRadiomics, then a LASSO signature (logistic or Cox by outcome) per phase,
    evaluated next to the deep signature with DeLong between them."""

    enabled: bool = Field(True, description="Fit the handcrafted radiomics signature (not for S3's box ROIs).")
    bin_width: float = Field(25.0, gt=0, description="Fixed bin size in HU (IBSI fixed bin size for CT).")
    window: WindowConfig | None = Field(None, description="HU clipping before binning; default: preprocess.window.")
    force2d: bool | None = Field(None, description="2D shape and in-plane texture; default: decided by the ROIs: "
                                                   "2D when every ROI lies on one axial slice (S1's and S5's "
                                                   "largest-slice ROIs), 3D when they span several (a study "
                                                   "with both gets 3D for all).")
    classes: list[Literal["firstorder", "shape", "glcm", "glrlm", "glszm", "gldm", "ngtdm"]] = Field(
        default_factory=lambda: ["firstorder", "shape", "glcm", "glrlm", "glszm", "gldm", "ngtdm"],
        description="Feature classes extracted (PyRadiomics names; shape is 2D shape when force2d).")
    max_correlation: float | None = Field(0.9, gt=0, le=1, description="Redundancy filter before LASSO: of two "
                                          "features with |Spearman rho| above this on training, the later is dropped "
                                          "(null: none). Texture features are highly collinear.")
    lambda_rule: Literal["min", "1se"] = Field("min", description=(
        "Lambda of each phase's handcrafted LASSO: min (cv.glmnet's lambda.min, lowest CV deviance) or 1se "
        "(lambda.1se, the largest lambda within one SE of it: fewer features)."))
    nfolds: int = Field(10, ge=3, description="Cross-validation folds of the LASSO (cv.glmnet's nfolds), seeded; "
                                              "a patient's lesions stay in one fold.")
    workers: int = Field(2, ge=1, description="Worker processes over patients.")


class SignatureConfig(Strict):
    """How image signatures are made (``gastrorad signature``)."""

    method: Literal["dl_probability", "lasso"] = Field(
        "dl_probability", description="dl_probability: the DL score as is (S1, S2); lasso: LASSO (logistic or Cox "
                                      "by outcome) on each phase's deep features, score = linear predictor (S5).")
    lambda_rule: Literal["min", "1se"] = Field("min", description=(
        "method: lasso: lambda of each phase's LASSO, min (cv.glmnet's lambda.min, lowest CV deviance; S5) or 1se "
        "(lambda.1se, the largest lambda within one SE of it: fewer features)."))
    bagging: Literal["none", "network"] = Field("none", description="network: with features.networks copies of "
                                                "a random network, one LASSO per copy (its n<k>_ features), each "
                                                "signature standardised on training, then averaged: a score that "
                                                "does not hang on one initialisation.")
    nfolds: int = Field(10, ge=3, description="Cross-validation folds of the LASSO (cv.glmnet's nfolds), seeded; "
                                              "a patient's lesions stay in one fold.")
    nlambda: int = Field(100, ge=5, description="Length of the lambda path (glmnet's nlambda).")
    icc_features: dict[str, Path] = Field(default_factory=dict, description=(
        "Phase -> CSV of deep features of re-segmented ROIs (patient_id, reader, f0000...), e.g. the same "
        "reader one month later (S5); features with ICC <= icc_threshold are dropped before LASSO."))
    icc_from_readers: bool = Field(True, description="Without icc_features: use the re-segmented ROIs of the "
                                   "manifest (rows with a reader), whose deep features extract-features writes.")
    icc_threshold: float = Field(0.8, ge=-1, le=1, description="Features whose ICC over the repeated "
                                 "segmentations exceeds this are kept (S5: 0.8), for the deep signatures and the "
                                 "handcrafted reference alike.")
    icc_form: Literal["A,1", "C,1", "1"] = Field("A,1", description=(
        "ICC form (McGraw and Wong 1996): A,1 two-way absolute agreement, single measurement (psych::ICC's ICC2); "
        "C,1 two-way consistency (ICC3); 1 one-way (ICC1)."))


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


class LongitudinalConfig(Strict):
    """S3's two-level attention models over lesions x time points (LDLM) and serial markers (TDLM)."""

    max_lesions: int = Field(6, ge=1, description="Primary tumour + up to 5 RECIST target lesions.")
    max_timepoints: int = Field(5, ge=1, description="Baseline + up to 4 follow-ups.")
    train_followups: int = Field(4, ge=0, description="Follow-ups the model sees in training.")
    apply_followups: dict[str, int] = Field(default_factory=lambda: {"BS": 0, "1F": 1, "2F": 2},
                                            description="Score name -> follow-ups used when applying the model.")
    dim: int = Field(128, ge=8, description="Width of the TH-former and OH-former.")
    heads: int = Field(4, ge=1, description="Attention heads of each former (dim must be a multiple of it).")
    layers: int = Field(1, ge=1, description="Blocks per former.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout in the formers' attention and MLP blocks and in "
                                                        "the output head.")
    extractor: Literal["trained", "frozen"] = Field("trained", description=(
        "LDLM's ROI extractor: 'trained' with the formers (the paper), or 'frozen': its weights stay as built "
        "(random, or model.pretrained), its feature maps are pooled from extractor_stages with "
        "extractor_pooling and z-scored on the training patients' ROIs, and only the formers and the head "
        "learn (what issue 29 measured on 300-patient cohorts)."))
    extractor_stages: Literal["last", "all"] = Field("all", description="Frozen extractor: feature maps of the "
                                                     "last stage or of every stage.")
    extractor_pooling: list[Literal["avg", "max"]] = Field(default_factory=lambda: ["avg", "max"],
                                                           description="Frozen extractor: global poolings of "
                                                                       "each stage's maps.")
    markers: list[str] = Field(default_factory=list, description="TDLM: clinical columns <marker>_t<k> "
                                                                 "(e.g. cea, ca199, ca724); empty = no TDLM.")
    seeds: list[int] = Field(default_factory=lambda: [0], description="Training seeds; more than one gives the "
                                                                      "reproducibility table (mean and SD).")


class ComputeConfig(Strict):
    """Where the run's work goes: per-patient work (preprocess, deep features, radiomics, scoring, explain) on
    Dask, resampling statistics (bootstrap, optimism correction, CV folds) in parallel processes."""

    scheduler: str = Field("local", description=(
        "'local': a Dask LocalCluster started for the run (nothing to set up); 'serial': this process only; "
        "or the address of a running Dask scheduler (tcp://host:8786), e.g. one started by dask-jobqueue on "
        "SLURM or dask-kubernetes."))
    workers: int | None = Field(None, ge=1, description=(
        "Worker processes of the local cluster and parallel jobs of the resampling statistics "
        "(default: each stage's own setting, preprocess.workers or radiomics.workers). With 1 worker "
        "the work stays in this process."))
    threads_per_worker: int = Field(1, ge=1, description="Threads per Dask worker (torch and ITK threads too).")
    memory_limit: str | None = Field("auto", description="Memory limit per local worker, e.g. '4GB'; 'auto' "
                                                         "shares the machine's memory; null: no limit.")


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
