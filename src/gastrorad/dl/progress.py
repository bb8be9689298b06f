"""One line per training epoch, for logs that are not a terminal.

The Lightning progress bar draws nothing useful into a log file; :class:`EpochLog` writes
through a plain ``log`` callable (the runner's printer, the CLI's console, or
``logging.getLogger("gastrorad.train").info``)::

    model epoch 3/100: loss 0.512, val loss 0.498, val AUC 0.731; 41.2 s (ETA 1 h 06 min); best val AUC 0.745 (epoch 2), patience 9/10

The line holds aggregate numbers only (losses, AUC or C-index, times), never a patient.
Each epoch's numbers are also kept in :attr:`EpochLog.rows` for the training history.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable

import lightning as L

_METRIC = {"val_auc": "val AUC", "val_c": "val C-index", "val_loss": "val loss", "train_loss": "loss"}


def default_log() -> Callable[[str], None]:
    return logging.getLogger("gastrorad.train").info


def duration(seconds: float) -> str:
    """``41.2 s``, ``12 min``, ``1 h 06 min``."""
    if seconds < 90:
        return f"{seconds:.1f} s"
    minutes = int(round(seconds / 60))
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _value(metrics: dict, key: str) -> float | None:
    v = metrics.get(key)
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


class EpochLog(L.Callback):
    """Log epoch k/N, losses, the validation metric, epoch time, ETA, best so far and patience."""

    def __init__(self, log: Callable[[str], None] | None = None, *, tag: str = "model", monitor: str | None = None):
        self.write = log or default_log()
        self.tag = tag
        self.monitor = monitor
        self.rows: list[dict] = []
        self._best: tuple[float, int] | None = None
        self._times: list[float] = []
        self._t0 = self._c0 = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch > 0:
            self.write(f"    {self.tag}: resuming at epoch {trainer.current_epoch + 1}/{trainer.max_epochs} "
                     "from last.ckpt")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0, self._c0 = time.perf_counter(), time.process_time()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Lightning runs validation before this hook, and early stopping / checkpointing at its end.
        seconds, cpu = time.perf_counter() - self._t0, time.process_time() - self._c0
        self._times.append(seconds)
        m = trainer.callback_metrics
        epoch, total = trainer.current_epoch + 1, trainer.max_epochs
        row = {"epoch": epoch, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3)}
        parts = []
        for key in ("train_loss", "val_loss", "val_auc", "val_c"):
            v = _value(m, key)
            if v is not None:
                row[key] = v
                parts.append(f"{_METRIC[key]} {v:.4g}" if key in ("train_loss", "val_loss") else
                             f"{_METRIC[key]} {v:.3f}")
        line = f"    {self.tag} epoch {epoch}/{total}: {', '.join(parts) or 'no metrics'}; {duration(seconds)}"
        if epoch < total:
            line += f" (ETA {duration(sum(self._times) / len(self._times) * (total - epoch))})"
        best = self._best_so_far(trainer, epoch, row)
        if best:
            line += f"; {best}"
        stopper = trainer.early_stopping_callback
        if stopper is not None and self.monitor is not None:
            left = max(0, stopper.patience - stopper.wait_count)
            row["patience_left"] = left
            line += f", patience {left}/{stopper.patience}"
        self.rows.append(row)
        self.write(line)

    def _best_so_far(self, trainer, epoch: int, row: dict) -> str:
        if self.monitor is None or self.monitor not in row:
            return ""
        v = row[self.monitor]
        higher = self.monitor in ("val_auc", "val_c")
        ckpt = trainer.checkpoint_callback
        if self._best is None and ckpt is not None and ckpt.best_model_score is not None and epoch > 1:
            self._best = (float(ckpt.best_model_score), 0)  # resumed: the best of the epochs before
        if self._best is None or (v > self._best[0] if higher else v < self._best[0]):
            self._best = (v, epoch)
        value, at = self._best
        return f"best {_METRIC[self.monitor]} {value:.4g}" + (f" (epoch {at})" if at else "")
