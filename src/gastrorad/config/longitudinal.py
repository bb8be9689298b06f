"""The study file's ``longitudinal:`` section: S3's two-level attention models over lesions x time
points (LDLM) and serial markers (TDLM); absent (null) in every other study.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gastrorad.config.base import Strict


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
