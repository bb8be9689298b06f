"""The model checkpoint (``models/<tag>/model.pt``): what inference needs, nothing else.

A checkpoint is a dict of plain values: the architecture fields (backbone, input channels,
spatial dims, head, hidden width, dropout) and the weights (``state_dict``). It is read
with ``torch.load(weights_only=True)``, so a crafted file cannot run code when a model is
loaded (``gastrorad score``, ``explain``, ``predict`` and the bundle). Training state
(optimizer, scheduler, epoch, callbacks) lives apart in ``last.ckpt`` next to it, which only
resuming a killed training reads (:mod:`gastrorad.dl.fit`); the training history is in
``models/models.json``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from gastrorad.config.study import StudyConfig
from gastrorad.dl.backbones import GastroNet, create_model
from gastrorad.errors import InputError, Problem
from gastrorad.io.atomic import atomic_write

CHECKPOINT_FORMAT = 2  # 1: also held the training history (still read)
ARCHITECTURE = ("backbone", "in_channels", "spatial_dims", "head", "hidden", "dropout")


def save_checkpoint(path: Path, net: GastroNet, *, channels: int, spatial_dims: int, cfg: StudyConfig,
                    backbone: str | None = None, dropout: float | None = None, history: list | None = None) -> Path:
    """Write the architecture fields and weights of ``net`` (atomically).

    ``history`` is accepted for older callers and not stored (it lives in ``models.json``).
    """
    del history
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in net.state_dict().items()}
    payload = {"gastrorad_checkpoint": CHECKPOINT_FORMAT, "backbone": backbone or cfg.model.backbone,
               "in_channels": int(channels), "spatial_dims": int(spatial_dims), "head": cfg.model.head,
               "hidden": int(cfg.model.hidden), "dropout": float(cfg.model.dropout if dropout is None else dropout),
               "state_dict": state}
    with atomic_write(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)
    return path


def read_plain(path: str | Path):
    """A ``.pt`` file loaded with ``weights_only=True``: plain values and tensors only; a file that
    needs anything else is refused with an :class:`InputError`, never unpickled."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(Problem(str(path), "checkpoint does not exist")) from None
    except (pickle.UnpicklingError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(Problem(str(path), "not a plain gastrorad checkpoint: it holds Python objects beyond plain "
                                 "values and tensors, which are not unpickled because a pickle can run code "
                                 f"(torch: {first})")) from None


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's dict (:func:`read_plain`), checked to be a gastrorad model checkpoint."""
    ck = read_plain(path)
    if not isinstance(ck, dict) or not ck.get("gastrorad_checkpoint") or "state_dict" not in ck:
        raise InputError(Problem(str(path), "not a gastrorad model checkpoint (no gastrorad_checkpoint/state_dict)"))
    missing = [k for k in ARCHITECTURE if k not in ck]
    if missing:
        raise InputError(Problem(str(path), f"checkpoint lacks architecture fields: {', '.join(missing)}"))
    return ck


def load_checkpoint(path: str | Path) -> GastroNet:
    """Rebuild the model saved by :func:`save_checkpoint` (eval mode)."""
    ck = read_checkpoint(path)
    net = create_model(ck["backbone"], in_channels=ck["in_channels"], spatial_dims=ck["spatial_dims"], head=ck["head"],
                       hidden=ck["hidden"], dropout=ck["dropout"])
    net.load_state_dict(ck["state_dict"])
    return net.eval()
