"""``gastrorad train`` and ``gastrorad score``: fit the deep model on the training cohort only,
then write the DL signature of every patient of every cohort.

The training cohort is split (stratified by outcome, seeded) into a fit part and a
validation part used for early stopping and checkpoint selection, or into k folds (S2);
with folds, a patient's score is the mean of the k models. Other cohorts never influence
training. Progressive Distill (S4) lives in :mod:`.distill`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from gastrorad.config.study import StudyConfig
from gastrorad.data.cohorts import stratified_split
from gastrorad.dl.aggregate import patient_scores
from gastrorad.dl.backbones import GastroNet, create_model, freeze, load_pretrained
from gastrorad.dl.data import PatchDataset, SampleTable, build_augment, build_eval_transform, load_sample_table
from gastrorad.dl.module import GastroModule
from gastrorad.io.atomic import atomic_write, atomic_write_text


@dataclass
class TrainResult:
    checkpoints: list[Path]
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def model_dir(cfg: StudyConfig) -> Path:
    return cfg.output_dir / "models"


def build_model(cfg: StudyConfig, channels: int, spatial_dims: int, *, backbone: str | None = None,
                dropout: float | None = None, stochastic_depth: float | None = None) -> GastroNet:
    m = cfg.model
    net = create_model(backbone or m.backbone, in_channels=channels, spatial_dims=spatial_dims, head=m.head,
                       hidden=m.hidden, dropout=m.dropout if dropout is None else dropout,
                       stochastic_depth=m.stochastic_depth if stochastic_depth is None else stochastic_depth)
    if m.pretrained is not None:
        load_pretrained(net, cfg.resolve(m.pretrained), m.pretrained_format)
    freeze(net, m.freeze)
    return net


def save_checkpoint(path: Path, net: GastroNet, *, channels: int, spatial_dims: int, cfg: StudyConfig,
                    history: list[dict], backbone: str | None = None, dropout: float | None = None) -> Path:
    """A self-describing checkpoint: architecture, weights, history (written atomically)."""
    payload = {"gastrorad_checkpoint": 1, "backbone": backbone or cfg.model.backbone, "in_channels": channels,
               "spatial_dims": spatial_dims, "head": cfg.model.head, "hidden": cfg.model.hidden,
               "dropout": cfg.model.dropout if dropout is None else dropout,
               "state_dict": net.state_dict(), "history": history}
    with atomic_write(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | Path) -> GastroNet:
    """Rebuild the model saved by :func:`save_checkpoint` (eval mode)."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    net = create_model(ck["backbone"], in_channels=ck["in_channels"], spatial_dims=ck["spatial_dims"], head=ck["head"],
                       hidden=ck["hidden"], dropout=ck["dropout"])
    net.load_state_dict(ck["state_dict"])
    return net.eval()


def _loader(ds, batch_size, shuffle, seed, num_workers, sampler=None):
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler, generator=g,
                      num_workers=num_workers, drop_last=False)


def _split_patients(frame: pd.DataFrame, kind: str, val_fraction: float, folds: int, seed: int):
    """Lists of (fit patients, validation patients): one hold-out split or k folds, stratified."""
    pts = frame.drop_duplicates("patient_id").reset_index(drop=True)
    strata = (pts["label"] if kind == "binary" else pts["event"]).astype(str).to_numpy()
    ids = pts["patient_id"].to_numpy()
    rng = np.random.default_rng(seed)
    if folds and folds > 1:
        parts = stratified_split(np.arange(len(ids)), strata, {f"f{k}": 1.0 for k in range(folds)}, rng)
        return [(np.setdiff1d(ids, ids[p]), ids[p]) for p in parts.values()]
    if val_fraction <= 0:
        return [(ids, np.array([], dtype=ids.dtype))]
    parts = stratified_split(np.arange(len(ids)), strata, {"fit": 1 - val_fraction, "val": val_fraction}, rng)
    return [(ids[parts["fit"]], ids[parts["val"]])]


def _quiet_lightning() -> None:
    import logging
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _trainer(cfg: StudyConfig, out: Path, monitor: str | None, progress: bool):
    import lightning as L
    _quiet_lightning()
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    t = cfg.training
    cuda = torch.cuda.is_available()
    precision = t.precision if t.precision != "auto" else ("16-mixed" if cuda else "32-true")
    callbacks = []
    ckpt = None
    if monitor:
        mode = "max" if monitor in ("val_auc", "val_c") else "min"
        ckpt = ModelCheckpoint(dirpath=out, filename="best", monitor=monitor, mode=mode, save_top_k=1,
                               save_weights_only=True)
        callbacks.append(ckpt)
        if t.early_stopping is not None:
            callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=t.early_stopping.patience))
    if progress:
        from lightning.pytorch.callbacks import RichProgressBar
        callbacks.append(RichProgressBar())
    trainer = L.Trainer(max_epochs=t.epochs, accelerator="auto", devices=t.devices if t.devices != "auto" else "auto",
                        precision=precision, deterministic="warn" if cuda else True, callbacks=callbacks,
                        logger=False, enable_checkpointing=bool(monitor), enable_progress_bar=progress,
                        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=out)
    return trainer, ckpt


def fit_and_keep_best(cfg: StudyConfig, module, train_dl, val_dl, out: Path, monitor: str | None, progress: bool):
    """Run the Lightning fit and load the best checkpoint (by ``monitor``) back into ``module``."""
    trainer, ckpt = _trainer(cfg, out, monitor, progress)
    trainer.fit(module, train_dl, val_dl)
    if ckpt is not None and ckpt.best_model_path:
        state = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
        Path(ckpt.best_model_path).unlink()
    return trainer, ckpt


def fit_one(cfg: StudyConfig, samples: SampleTable, fit_ids, val_ids, *, tag: str, seed: int, progress: bool = False,
            backbone: str | None = None, dropout: float | None = None, stochastic_depth: float | None = None,
            teacher: GastroNet | None = None) -> tuple[Path, list[dict]]:
    """Train one model on ``fit_ids`` (validated on ``val_ids``); returns its checkpoint and history."""
    import lightning as L

    L.seed_everything(seed, workers=True, verbose=False)
    t = cfg.training
    frame = samples.frame
    fit = frame[frame.patient_id.isin(fit_ids)]
    val = frame[frame.patient_id.isin(val_ids)]
    net = build_model(cfg, samples.channels, samples.spatial_dims, backbone=backbone, dropout=dropout,
                      stochastic_depth=stochastic_depth)
    horizon = t.horizon if (samples.kind == "survival" and t.loss == "bce_cox") else None
    train_ds = PatchDataset(fit, samples.kind, build_augment(cfg.augment, samples.spatial_dims, seed), horizon=horizon)
    sampler = pos_weight = None
    if samples.kind == "binary":
        y = fit["label"].to_numpy(float)
        if t.balanced_sampling:
            w = np.where(y == 1, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1))
            g = torch.Generator()
            g.manual_seed(seed)
            sampler = WeightedRandomSampler(torch.as_tensor(w), num_samples=len(w), replacement=True, generator=g)
        if t.class_weights:
            pos_weight = float((1 - y).sum() / max(y.sum(), 1))
    train_dl = _loader(train_ds, t.batch_size, True, seed, t.num_workers, sampler)
    monitor = None
    val_dl = None
    if len(val):
        val_dl = _loader(PatchDataset(val, samples.kind, build_eval_transform(cfg.augment)), t.batch_size, False, seed,
                         t.num_workers)
        monitor = (t.early_stopping.monitor if t.early_stopping else "val_loss")
        if samples.kind == "survival" and monitor == "val_auc":
            monitor = "val_c"
    module = GastroModule(net, t, samples.kind, steps_per_epoch=len(train_dl), pos_weight=pos_weight, teacher=teacher)
    out = model_dir(cfg) / tag
    out.mkdir(parents=True, exist_ok=True)
    trainer, ckpt = fit_and_keep_best(cfg, module, train_dl, val_dl, out, monitor, progress)
    history = [{"epoch": trainer.current_epoch, "best_score": float(ckpt.best_model_score) if ckpt and
                ckpt.best_model_score is not None else None, "monitor": monitor, "stopped_epoch":
                trainer.current_epoch}]
    path = save_checkpoint(out / "model.pt", module.model, channels=samples.channels, spatial_dims=samples.spatial_dims,
                           cfg=cfg, history=history, backbone=backbone, dropout=dropout)
    return path, history


def train_model(cfg: StudyConfig, *, phase: str | None = None, progress: bool = False) -> TrainResult:
    """Train on the training cohort (hold-out or k-fold validation inside it); Progressive
    Distill when ``training.distill`` is set."""
    t0 = time.perf_counter()
    samples = load_sample_table(cfg, phase)
    train = samples.frame[samples.frame.cohort == "training"]
    if train.empty:
        raise ValueError("no training patient has patches")
    if cfg.training.distill is not None:
        from gastrorad.dl.distill import progressive_distill
        return progressive_distill(cfg, samples, progress=progress)
    splits = _split_patients(train, samples.kind, cfg.training.val_fraction, cfg.training.folds, cfg.seed)
    ckpts, history = [], []
    for k, (fit_ids, val_ids) in enumerate(splits):
        tag = f"fold{k}" if len(splits) > 1 else "model"
        path, hist = fit_one(cfg, samples, fit_ids, val_ids, tag=tag, seed=cfg.seed + k, progress=progress)
        ckpts.append(path)
        history += [{**h, "model": tag} for h in hist]
    atomic_write_text(model_dir(cfg) / "models.json", json.dumps({"checkpoints": [str(p) for p in ckpts],
                                                                  "history": history}, indent=2))
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
    if checkpoints is None:
        meta = json.loads((model_dir(cfg) / "models.json").read_text())
        checkpoints = [Path(p) for p in meta["checkpoints"]]
    preds = np.mean([predict_samples(load_checkpoint(p), samples.frame, samples.kind, cfg) for p in checkpoints], axis=0)
    frame = samples.frame.assign(score=1 / (1 + np.exp(-preds)) if samples.kind == "binary" else preds)
    t = cfg.training
    scores = patient_scores(frame, t.aggregate, t.top_k)
    atomic_write_text(cfg.output_dir / "dl_scores.csv", scores.to_csv(index=False))
    return scores
