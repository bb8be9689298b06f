"""The study file's image-signature sections: ``features:`` (frozen deep features: stages, poolings,
random-network copies), ``radiomics:`` (the handcrafted PyRadiomics reference and its LASSO) and
``signature:`` (how each phase's image signature is made: the DL score or a LASSO, ICC filtering).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from gastrorad.config.base import POOLINGS, Strict
from gastrorad.config.preprocess import WindowConfig


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
