"""The study file's deep-model sections: ``model:`` (backbone and head), ``augment:`` (training-time
augmentation) and ``training:`` (loss, optimiser, schedule, ``training.early_stopping``, class
balance, patient scores, devices and ``training.distill``, S4's Progressive Distill).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from gastrorad.config.base import Strict


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
    random_crop: list[int] | None = Field(None, description="Random crop size after resize (S4: [224, 224]); "
                                                            "centre crop at inference.")


class DistillConfig(Strict):
    """Progressive Distill (S4): teacher, then students trained on the KD loss with model noise."""

    chain: list[str] = Field(default_factory=list, description="Backbones of the students (e.g. [efficientnet_b3, "
                                                               "efficientnet_b7]).")
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
        "process per device from this call (works inside `gastrorad run`, and with CUDA); 'ddp' when torchrun or "
        "SLURM srun started every "
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
