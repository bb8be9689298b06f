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

    def __init__(self, log: Callable[[str], None] | None = None, *, tag: str = "model", monitor: str | None = None,
                 best=None):
        self.write = log or default_log()
        self.tag = tag
        self.monitor = monitor
        self.best = best  # has best_model_score and best_epoch (the fit's best-weights keeper)
        self.rows: list[dict] = []
        self._times: list[float] = []
        self._t0 = self._c0 = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch > 0 and trainer.is_global_zero:
            self.write(f"    {self.tag}: resuming at epoch {trainer.current_epoch + 1}/{trainer.max_epochs} "
                     "from last.ckpt")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0, self._c0 = time.perf_counter(), time.process_time()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Lightning runs validation, early stopping and the best-weights check before this hook.
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
        if self.monitor is not None and self.best is not None and self.best.best_epoch is not None:
            line += f"; best {_METRIC[self.monitor]} {self.best.best_model_score:.4g} (epoch {self.best.best_epoch})"
        stopper = trainer.early_stopping_callback
        if stopper is not None and self.monitor is not None:
            left = max(0, stopper.patience - stopper.wait_count)
            row["patience_left"] = left
            line += f", patience {left}/{stopper.patience}"
        self.rows.append(row)
        if trainer.is_global_zero:  # data-parallel ranks hold the same numbers: one line per epoch
            self.write(line)
