"""Fitting one deep model: the fit/validation split, the Lightning trainer, early stopping,
the best checkpoint, one log line per epoch, and resuming a killed fit.

Files in ``models/<tag>/`` while a model trains:

    best.pt     weights of the best epoch so far (by the monitored validation metric)
    last.ckpt   the state needed to resume: weights, optimizer, scheduler, epoch, early
                stopping and best-epoch bookkeeping, and a key of the fit's inputs
    model.pt    written at the end: architecture and the best weights (:mod:`.checkpoint`)

A fit started again with the same inputs (study-file sections, patients, patch files,
teacher) resumes from ``last.ckpt``; with other inputs that file is discarded. ``best.pt``
and ``last.ckpt`` are removed once the fit has finished, so inference never meets them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from gastrorad.config.study import StudyConfig
from gastrorad.data.cohorts import stratified_split
from gastrorad.dl.backbones import NAMED_WEIGHTS, GastroNet, create_model, freeze, load_pretrained
from gastrorad.dl.checkpoint import save_checkpoint
from gastrorad.dl import distributed
from gastrorad.dl.data import PatchDataset, SampleTable, build_augment, build_eval_transform
from gastrorad.dl.module import GastroModule
from gastrorad.dl.progress import EpochLog
from gastrorad.errors import InputError, Problem

Log = Callable[[str], None]


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
    # how the patches were made, for backbones that map them onto their pretrained input range
    options = {"input_normalize": cfg.preprocess.normalize, "input_window": cfg.preprocess.window.bounds}
    net = create_model(backbone or m.backbone, in_channels=channels, spatial_dims=spatial_dims, head=m.head,
                       hidden=m.hidden, dropout=m.dropout if dropout is None else dropout,
                       stochastic_depth=m.stochastic_depth if stochastic_depth is None else stochastic_depth,
                       backbone_options=options)
    if m.pretrained is not None:
        named = str(m.pretrained) in NAMED_WEIGHTS  # installed weights, not a file next to the study
        load_pretrained(net, str(m.pretrained) if named else cfg.resolve(m.pretrained), m.pretrained_format)
    freeze(net, m.freeze)
    return net


def build_feature_network(cfg: StudyConfig, channels: int, spatial_dims: int) -> tuple[GastroNet, int]:
    """The frozen network of ``extract-features`` (eval mode) for patches of ``channels`` channels,
    and the number of input channels it takes. The same for a seed wherever it is built (``run``,
    ``extract-features``): seeded with ``features.seed`` (default: the study's seed);
    ``features.networks`` > 1 without pretrained weights gives that many independently
    initialised copies side by side. With ``features.per_slice`` the network sees one CT slice
    and the mask; without ``features.mask_input`` the mask channel only chooses where to pool."""
    from gastrorad.dl.backbones import bank_name
    in_channels = 2 if cfg.features.per_slice else channels
    if not cfg.features.mask_input and getattr(cfg.preprocess.patch, "mask_channel", False):
        in_channels -= 1
    L.seed_everything(cfg.seed if cfg.features.seed is None else cfg.features.seed, verbose=False)
    k = cfg.features.networks if cfg.model.pretrained is None else 1
    return build_model(cfg, in_channels, spatial_dims, backbone=bank_name(cfg.model.backbone, k)).eval(), in_channels


# -- who is fitted, who validates -------------------------------------------------------------------------------
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


def split_patients(cfg: StudyConfig, samples: SampleTable, *, folds: int | None = None):
    """(fit patients, validation patients) of each model to train.

    ``training.val_cohort`` set: every training patient is fitted and that cohort's patients
    validate (early stopping, checkpoint selection). Otherwise a stratified hold-out of
    ``training.val_fraction`` of training, or ``training.folds`` folds (``folds`` overrides).
    """
    t = cfg.training
    frame = samples.frame
    train = frame[frame.cohort == "training"]
    if t.val_cohort is None:
        return _split_patients(train, samples.kind, t.val_fraction, t.folds if folds is None else folds, cfg.seed)
    if t.folds:
        raise InputError(Problem("study file", "training.val_cohort names one validation cohort and excludes "
                                 "k-fold training (set training.folds to 0)", column="training.val_cohort"))
    val = frame[frame.cohort == t.val_cohort]
    if val.empty:
        present = ", ".join(sorted(frame.cohort.dropna().astype(str).unique()))
        raise InputError(Problem("study file", f"no patient with patches in cohort '{t.val_cohort}' (cohorts of "
                                 f"this study: {present})", column="training.val_cohort"))
    return [(train.patient_id.unique(), val.patient_id.unique())]


# -- the trainer ----------------------------------------------------------------------------------------------------
def _loader(ds, batch_size, shuffle, seed, num_workers, sampler=None):
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler, generator=g,
                      num_workers=num_workers, drop_last=False, persistent_workers=num_workers > 0)


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.seed",
                 "lightning.fabric.utilities.distributed", "lightning.pytorch.utilities.distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import warnings
    # validation metrics are computed from predictions gathered over every rank (module.py): the same on all
    warnings.filterwarnings("ignore", message=r".*sync_dist=True.*")


class BestAndLast(L.Callback):
    """The best epoch's weights (by ``monitor``), kept in memory; with a resume ``key``, the
    resume point written to ``out``: ``best.pt`` (those weights) and ``last.ckpt`` (the full
    training state and the key).

    The resume point is written after an epoch once ``every_seconds`` and 20 times the previous
    write's duration have passed since the fit started or the last write (never after the
    last epoch), so a kill loses at most about a minute or one epoch of training and writing
    costs at most about 5 % of it (ResNet-18 3D's state is ~0.4 GB).
    """

    every_seconds = 60.0

    def __init__(self, monitor: str | None, out: Path, key: str | None = None):
        self.monitor, self.out, self.key = monitor, out, key
        self.best_model_score: float | None = None
        self.best_epoch: int | None = None
        self.best_state: dict | None = None
        self._written_at = 0.0
        self._write_seconds = 0.0

    def on_validation_end(self, trainer, pl_module) -> None:
        v = trainer.callback_metrics.get(self.monitor) if self.monitor else None
        if v is None or trainer.sanity_checking or math.isnan(float(v)):
            return
        v, best = float(v), self.best_model_score
        if best is None or (v > best if self.monitor in ("val_auc", "val_c") else v < best):
            self.best_model_score, self.best_epoch = v, trainer.current_epoch + 1
            self.best_state = {k: t.detach().clone() for k, t in pl_module.model.state_dict().items()}

    def on_train_start(self, trainer, pl_module) -> None:
        self._written_at = time.monotonic()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # validation, early stopping and the best weights are done for this epoch (Lightning runs them first)
        if self.key is None or trainer.should_stop or trainer.current_epoch + 1 >= trainer.max_epochs:
            return
        t0 = time.monotonic()
        due = t0 - self._written_at >= max(self.every_seconds, 20 * self._write_seconds)
        # rank 0's clock decides for every rank: saving the trainer's state is collective under DDP
        if not trainer.strategy.broadcast(due, src=0):
            return
        zero = trainer.is_global_zero
        if zero and self.best_state is not None:
            torch.save(self.best_state, self.out / "best.pt.tmp")
        trainer.save_checkpoint(self.out / "last.ckpt.tmp", weights_only=False)  # written by rank 0
        if zero:
            if self.best_state is not None:
                os.replace(self.out / "best.pt.tmp", self.out / "best.pt")
            os.replace(self.out / "last.ckpt.tmp", self.out / "last.ckpt")
        self._written_at = time.monotonic()
        self._write_seconds = self._written_at - t0

    def state_dict(self) -> dict:
        return {"key": self.key, "best_model_score": self.best_model_score, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best_model_score, self.best_epoch = state["best_model_score"], state["best_epoch"]
        if self.best_epoch is not None:
            self.best_state = torch.load(self.out / "best.pt", map_location="cpu", weights_only=True)


def _stored_key(path: Path) -> str | None:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable or foreign: start afresh
        return None
    return ck.get("callbacks", {}).get("BestAndLast", {}).get("key")


def _trainer(cfg: StudyConfig, out: Path, monitor: str | None, progress: bool, *, log: Log | None = None,
             tag: str = "model", resume_key: str | None = None):
    _quiet_lightning()
    from lightning.pytorch.callbacks import EarlyStopping

    t = cfg.training
    cuda = torch.cuda.is_available()
    precision = t.precision if t.precision != "auto" else ("16-mixed" if cuda else "32-true")
    best = BestAndLast(monitor, out, resume_key)
    strategy = distributed.strategy(t, _quiet_lightning)
    if isinstance(strategy, distributed.DistributedFit):
        distributed.check_picklable_log(log, strategy._start_method)
    callbacks: list = [best, EpochLog(log, tag=tag, monitor=monitor, best=best)]
    if monitor and t.early_stopping is not None:
        mode = "max" if monitor in ("val_auc", "val_c") else "min"
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=t.early_stopping.patience))
    if progress:
        from lightning.pytorch.callbacks import RichProgressBar
        callbacks.append(RichProgressBar())
    trainer = L.Trainer(max_epochs=t.epochs, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
                        strategy=strategy, precision=precision,
                        deterministic="warn" if cuda else True, callbacks=callbacks,
                        logger=False, enable_checkpointing=False, enable_progress_bar=progress,
                        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=out)
    return trainer, best


def fit_and_keep_best(cfg: StudyConfig, module, train_dl, val_dl, out: Path, monitor: str | None, progress: bool,
                      *, log: Log | None = None, tag: str = "model", resume_key: str | None = None):
    """Run the Lightning fit (resuming from ``out/last.ckpt`` when its key is ``resume_key``)
    and load the best weights (by ``monitor``) back into ``module.model``; returns (trainer,
    :class:`BestAndLast` with ``best_model_score``). With ``resume_key`` None nothing is
    written for resuming."""
    last, best_file = out / "last.ckpt", out / "best.pt"
    ckpt_path = None
    zero = distributed.is_rank_zero()  # ranks started by torchrun/srun run this too; rank 0 owns the files
    if resume_key is not None and last.exists():
        if _stored_key(last) == resume_key and (monitor is None or best_file.exists()):
            ckpt_path = last
        elif zero:
            last.unlink(missing_ok=True)
    # The Trainer switches deterministic algorithms on for the whole process; put the flags back afterwards.
    # With them on, torch also fills every new uninitialised tensor (torch.empty) with NaN: that changes no
    # result of a correct op and cost ~10 % of a CPU training step (bench/train.py), so it is off while fitting.
    import torch.utils.deterministic as torch_deterministic
    flags = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch_deterministic.fill_uninitialized_memory)
    try:
        torch_deterministic.fill_uninitialized_memory = False
        trainer, best = _trainer(cfg, out, monitor, progress, log=log, tag=tag, resume_key=resume_key)
        trainer.fit(module, train_dl, val_dl, ckpt_path=ckpt_path, weights_only=True if ckpt_path else None)
    finally:
        torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
        torch_deterministic.fill_uninitialized_memory = flags[2]
    if best.best_state is not None:
        module.model.load_state_dict(best.best_state)
    if zero:
        last.unlink(missing_ok=True)  # first: a run killed in between starts afresh rather than resuming without best
        for path in (best_file, out / "last.ckpt.tmp", out / "best.pt.tmp"):
            path.unlink(missing_ok=True)
    return trainer, best


def resume_key(cfg: StudyConfig, tag: str, fit: pd.DataFrame, val: pd.DataFrame, **extra) -> str:
    """Digest of everything a fit depends on: the study-file sections it reads, its samples
    (patch files carry a hash of their inputs in their names) and ``extra``."""
    from gastrorad import __version__
    h = hashlib.sha256()
    sections = {k: getattr(cfg, k).model_dump(mode="json") for k in ("model", "augment", "training", "outcome")}
    h.update(json.dumps({"v": __version__, "tag": tag, "seed": cfg.seed, **sections, **extra}, sort_keys=True,
                        default=str).encode())
    for part in (fit, val):
        h.update(pd.util.hash_pandas_object(part[["patient_id", "path", "index"]].astype(str), index=False)
                 .to_numpy().tobytes())
        h.update(b"|")
    return h.hexdigest()


def _weights_digest(net: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def fit_one(cfg: StudyConfig, samples: SampleTable, fit_ids, val_ids, *, tag: str, seed: int, progress: bool = False,
            backbone: str | None = None, dropout: float | None = None, stochastic_depth: float | None = None,
            teacher: GastroNet | None = None, log: Log | None = None) -> tuple[Path, list[dict]]:
    """Train one model on ``fit_ids`` (validated on ``val_ids``); returns its checkpoint
    (``models/<tag>/model.pt``) and history (one summary dict with the epochs' rows)."""
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
    batch = distributed.local_batch_size(t)  # the global batch_size, split over data-parallel ranks
    train_dl = _loader(train_ds, batch, True, seed, t.num_workers, sampler)
    monitor = None
    val_dl = None
    if len(val):
        val_ds = PatchDataset(val, samples.kind, build_eval_transform(cfg.augment))
        val_dl = _loader(distributed.Numbered(val_ds), batch, False, seed, t.num_workers)
        monitor = (t.early_stopping.monitor if t.early_stopping else "val_loss")
        if samples.kind == "survival" and monitor == "val_auc":
            monitor = "val_c"
    module = GastroModule(net, t, samples.kind, steps_per_epoch=len(train_dl), pos_weight=pos_weight, teacher=teacher)
    out = model_dir(cfg) / tag
    out.mkdir(parents=True, exist_ok=True)
    key = resume_key(cfg, tag, fit, val, seed=seed, backbone=backbone, dropout=dropout,
                     stochastic_depth=stochastic_depth, teacher=_weights_digest(teacher) if teacher is not None else None)
    trainer, ckpt = fit_and_keep_best(cfg, module, train_dl, val_dl, out, monitor, progress, log=log, tag=tag,
                                      resume_key=key)
    epochs = next(cb.rows for cb in trainer.callbacks if isinstance(cb, EpochLog))
    history = [{"epoch": trainer.current_epoch, "best_score": ckpt.best_model_score, "best_epoch": ckpt.best_epoch,
                "monitor": monitor, "stopped_epoch": trainer.current_epoch, "epochs": epochs}]
    path = out / "model.pt"
    if distributed.is_rank_zero():
        save_checkpoint(path, module.model, channels=samples.channels, spatial_dims=samples.spatial_dims, cfg=cfg,
                        backbone=backbone, dropout=dropout)
    return path, history
