"""The Lightning module: one training step for every loss, cosine schedule with warm-up,
validation AUC / C-index / loss for early stopping and checkpoint selection."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import torch

from gastrorad.config.study import TrainingConfig
from gastrorad.dl.distributed import gather_validation
from gastrorad.dl.losses import bce_loss, cox_loss, kd_loss


class GastroModule(L.LightningModule):
    def __init__(self, model: torch.nn.Module, training: TrainingConfig, kind: str, *, steps_per_epoch: int,
                 pos_weight: float | None = None, teacher: torch.nn.Module | None = None):
        super().__init__()
        self.model = model
        self.cfg = training
        self.kind = kind
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.pos_weight = None if pos_weight is None else torch.tensor(pos_weight)
        self.teacher = teacher
        if teacher is not None:
            teacher.eval()
            for p in teacher.parameters():
                p.requires_grad = False
        self._val: list[tuple[np.ndarray, dict]] = []

    def forward(self, x):
        return self.model(x).reshape(-1)

    def _loss(self, out, target, x=None):
        c = self.cfg
        if self.kind == "binary":
            if self.teacher is not None and c.distill is not None:
                with torch.no_grad():
                    t = self.teacher(x).reshape(-1)
                return kd_loss(out, t, target["label"], alpha=c.distill.alpha, temperature=c.distill.temperature,
                               label_smoothing=c.label_smoothing)
            pw = self.pos_weight.to(out.device) if self.pos_weight is not None else None
            return bce_loss(out, target["label"], label_smoothing=c.label_smoothing, pos_weight=pw)
        loss = cox_loss(out, target["time"], target["event"])
        if c.loss == "bce_cox" and "label" in target:
            known = target["label"] >= 0
            if known.any():
                # a high Cox risk means early death: the logit of "event-free beyond horizon" is -risk
                loss = loss + bce_loss(-out[known], target["label"][known])
        return loss

    def training_step(self, batch, batch_idx):
        x, target = batch
        if self.teacher is not None:
            self.teacher.eval()
        loss = self._loss(self(x), target, x)
        n = len(next(iter(target.values())))  # x may be a dict (S3 models)
        # sync_dist: the epoch's loss over every data-parallel rank (a no-op in one process)
        self.log("train_loss", loss, prog_bar=True, on_epoch=True, on_step=False, batch_size=n, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, target = batch
        out = self(x)
        self._val.append((out.detach().float().cpu().numpy(), {k: v.cpu().numpy() for k, v in target.items()}))

    def on_validation_epoch_end(self):
        if not self._val:
            return
        out = np.concatenate([o for o, _ in self._val])
        tgt = {k: np.concatenate([t[k] for _, t in self._val]) for k in self._val[0][1]}
        self._val.clear()
        # the whole validation set on every rank (not per-rank metrics averaged): same best epoch everywhere
        out, tgt = gather_validation(self, out, tgt)
        o = torch.as_tensor(out)
        if self.kind == "binary":
            y = tgt["label"]
            loss = float(bce_loss(o, torch.as_tensor(y)))
            from gastrorad.stats.roc import auc
            metric = auc(y, out) if 0 < y.sum() < len(y) else 0.5
            self.log("val_auc", metric, prog_bar=True)
        else:
            loss = float(cox_loss(o, torch.as_tensor(tgt["time"]), torch.as_tensor(tgt["event"])))
            from gastrorad.stats.survival.concordance import harrell_c
            metric = harrell_c(tgt["time"], tgt["event"].astype(int), out).c if tgt["event"].any() else 0.5
            self.log("val_c", metric, prog_bar=True)
        self.log("val_loss", loss, prog_bar=True)

    def configure_optimizers(self):
        c = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        if c.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        else:
            opt = torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        steps = self.steps_per_epoch
        if self._trainer is not None and self.trainer.world_size > 1:
            steps = max(1, self.trainer.estimated_stepping_batches // c.epochs)  # each rank's share of the batches
        total = c.epochs * steps
        warm = c.warmup_epochs * steps

        def factor(step):
            if warm and step < warm:
                return (step + 1) / warm
            if c.schedule == "constant":
                return 1.0
            progress = (step - warm) / max(1, total - warm)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
