"""``gastrorad train`` and ``gastrorad score``: fit the deep model on the training cohort only,
then write the DL signature of every patient of every cohort.

The training cohort is split (stratified by outcome, seeded) into a fit part and a
validation part used for early stopping and checkpoint selection, or into k folds (S2);
with folds, a patient's score is the mean of the k models. ``training.val_cohort`` instead
names a cohort (e.g. internal) that validates while every training patient is fitted; that
cohort then takes part in model selection (the report says so). No other cohort influences
training. Fitting one model lives in :mod:`.fit`, checkpoints in :mod:`.checkpoint`,
Progressive Distill (S4) in :mod:`.distill`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from gastrorad.config.study import StudyConfig
from gastrorad.dl.aggregate import patient_scores
from gastrorad.dl.backbones import GastroNet
from gastrorad.dl.checkpoint import load_checkpoint, save_checkpoint
from gastrorad.dl.data import PatchDataset, build_eval_transform, load_sample_table
from gastrorad.dl.distill import progressive_distill
from gastrorad.dl.fit import (Log, TrainResult, _split_patients, build_model, fit_and_keep_best, fit_one, model_dir,
                              split_patients)
from gastrorad.io.atomic import atomic_write_text

# Imported from here by the runner, the CLI, explain, predict and the longitudinal models.
__all__ = ["TrainResult", "_split_patients", "build_model", "fit_and_keep_best", "fit_one", "load_checkpoint",
           "model_dir", "predict_samples", "save_checkpoint", "score_study", "split_patients", "train_model"]


def train_model(cfg: StudyConfig, *, phase: str | None = None, progress: bool = False,
                log: Log | None = None) -> TrainResult:
    """Train on the training cohort (validated on a hold-out or folds of it, or on
    ``training.val_cohort``); Progressive Distill when ``training.distill`` is set.

    ``progress`` draws Lightning's progress bar (for a terminal); ``log`` receives one line
    per epoch (default: the ``gastrorad.train`` logger at INFO).
    """
    t0 = time.perf_counter()
    samples = load_sample_table(cfg, phase)
    train = samples.frame[samples.frame.cohort == "training"]
    if train.empty:
        raise ValueError("no training patient has patches")
    if cfg.training.distill is not None:
        return progressive_distill(cfg, samples, progress=progress, log=log)
    splits = split_patients(cfg, samples)
    ckpts, history = [], []
    for k, (fit_ids, val_ids) in enumerate(splits):
        tag = f"fold{k}" if len(splits) > 1 else "model"
        path, hist = fit_one(cfg, samples, fit_ids, val_ids, tag=tag, seed=cfg.seed + k, progress=progress, log=log)
        ckpts.append(path)
        history += [{**h, "model": tag} for h in hist]
    meta = {"checkpoints": [str(p) for p in ckpts], "history": history}
    if len(splits) > 1:  # k folds: who each model held out, for the out-of-fold scores of training patients
        meta["held_out"] = [[str(p) for p in val_ids] for _, val_ids in splits]
    atomic_write_text(model_dir(cfg) / "models.json", json.dumps(meta, indent=2))
    return TrainResult(ckpts, history, time.perf_counter() - t0)


@torch.no_grad()
def predict_samples(net: GastroNet, frame: pd.DataFrame, kind: str, cfg: StudyConfig, batch_size: int = 64) -> np.ndarray:
    """Model output per sample (logit for binary, log-risk for survival)."""
    ds = PatchDataset(frame, kind, build_eval_transform(cfg.augment))
    dl = DataLoader(ds, batch_size=batch_size, shuffle=False)
    net.eval()
    return np.concatenate([net(x).reshape(-1).float().cpu().numpy() for x, _ in dl]) if len(ds) else np.array([])


def score_study(cfg: StudyConfig, *, phase: str | None = None, checkpoints: list[Path] | None = None) -> pd.DataFrame:
    """The DL signature: one row per patient of every cohort (patient_id, cohort, score),
    from models fitted on training only; binary scores are probabilities."""
    samples = load_sample_table(cfg, phase)
    meta: dict = {}
    if checkpoints is None:
        meta = json.loads((model_dir(cfg) / "models.json").read_text(encoding="utf-8"))
        checkpoints = [Path(p) for p in meta["checkpoints"]]
    each = [predict_samples(load_checkpoint(p), samples.frame, samples.kind, cfg) for p in checkpoints]
    t = cfg.training

    def scored(preds: np.ndarray) -> pd.DataFrame:
        frame = samples.frame.assign(score=1 / (1 + np.exp(-preds)) if samples.kind == "binary" else preds)
        return patient_scores(frame, t.aggregate, t.top_k)

    scores = scored(np.mean(each, axis=0))
    held_out = meta.get("held_out")
    if held_out and len(held_out) == len(each):
        # out-of-fold score of each training patient: from the one model whose fold held it out (the
        # fusion models are fitted on these, not on the ensemble that saw the patient)
        oof = pd.Series(np.nan, index=scores.patient_id.astype(str).to_numpy())
        for preds, ids in zip(each, held_out):
            s = scored(preds).set_index("patient_id").score
            s.index = s.index.astype(str)
            keep = [p for p in ids if p in s.index and p in oof.index]
            oof.loc[keep] = s.loc[keep].to_numpy()
        scores["score_oof"] = np.where(scores.cohort == "training", oof.to_numpy(), np.nan)
    atomic_write_text(cfg.output_dir / "dl_scores.csv", scores.to_csv(index=False))
    return scores
