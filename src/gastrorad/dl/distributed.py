"""Data-parallel training (Lightning DDP) that a library call can run and get a model back from.

Lightning's plain ``ddp`` strategy starts the other ranks by running the script's command
line again, which cannot work from inside ``gastrorad run`` (each rank would redo the whole
study). So ``training.strategy: auto`` uses ``ddp_spawn`` for more than one device: the
ranks are started by this call (spawned, not forked: a rank forked from a process whose
OpenMP pool has run a CPU convolution can hang in its first one, as seen in the test suite),
and when they finish, rank 0 hands back to the calling process what the rest of the
pipeline needs: the best epoch's weights and score, and the per-epoch rows of the history
(:class:`DistributedFit`). ``ddp`` is for processes that torchrun or SLURM ``srun`` started
(multi-node); every rank then runs ``gastrorad train`` and rank 0 writes the files.

Under every strategy:

- ``training.batch_size`` is the global batch: each of N processes takes batch_size / N, so a
  recipe trains with the same batch and learning-rate schedule on 1 or N devices;
- training samples are split over the ranks by Lightning's distributed sampler (seeded);
- validation predictions are gathered from every rank, the padding that the sampler adds is
  dropped by sample number (:class:`Numbered`), and the AUC / C-index / loss are computed on
  the whole validation set in its original order, so every rank selects the same best epoch;
- checkpoints, ``best.pt``/``last.ckpt`` and the per-epoch log lines are written by rank 0.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile

import numpy as np
import torch
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher
from torch.utils.data import Dataset

from gastrorad.config.study import TrainingConfig

START_METHOD = {"ddp_spawn": "spawn", "ddp": "popen"}


def devices_per_node(t: TrainingConfig) -> int:
    """Processes per node that ``training.devices`` asks for (Lightning's reading of it)."""
    d = str(t.devices).strip().strip("[]")
    gpu = t.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if d in ("auto", "-1"):
        return torch.cuda.device_count() if gpu else 1
    if "," in d:
        return len([x for x in d.split(",") if x.strip()])
    return int(d)


def world_size(t: TrainingConfig) -> int:
    return devices_per_node(t) * t.num_nodes


def local_batch_size(t: TrainingConfig) -> int:
    """Each rank's share of the global ``batch_size``."""
    return max(1, math.ceil(t.batch_size / world_size(t)))


def strategy(t: TrainingConfig, quiet) -> str | DDPStrategy:
    """The Lightning strategy for ``training``: 'auto' (one process) or a :class:`DistributedFit`."""
    if t.strategy == "auto" and world_size(t) == 1:
        return "auto"
    name = "ddp_spawn" if t.strategy == "auto" else t.strategy
    return DistributedFit(start_method=START_METHOD[name], quiet=quiet)


def is_rank_zero() -> bool:
    """True in a single process, in the process that started spawned ranks, and on global rank 0."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only
    return getattr(rank_zero_only, "rank", 0) == 0


class Numbered(Dataset):
    """A dataset whose targets also carry the sample's number (``sample``), so predictions
    gathered from every rank can be put back in order without the sampler's padding."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        x, target = self.dataset[i]
        return x, {**target, "sample": torch.tensor(i, dtype=torch.int64)}


def gather_validation(module, out: np.ndarray, target: dict[str, np.ndarray]):
    """Every rank's validation outputs and targets, each sample once, in sample order.

    A no-op in a single process. Lightning's distributed sampler gives every rank the same
    number of samples (it repeats some), so the arrays can be all-gathered as they are."""
    if module.trainer is None or module.trainer.world_size == 1 or "sample" not in target:
        return out, target
    got = module.all_gather({"out": torch.as_tensor(out), **{k: torch.as_tensor(v) for k, v in target.items()}})
    flat = {k: v.reshape(-1).cpu().numpy() for k, v in got.items()}
    _, first = np.unique(flat["sample"], return_index=True)  # sorted sample numbers, each once
    return flat.pop("out")[first], {k: v[first] for k, v in flat.items()}


class DistributedFit(DDPStrategy):
    """DDP (gloo on CPU, NCCL on CUDA) whose spawned ranks hand the fit's outcome back
    to the calling process: the best weights, score and epoch (``BestAndLast``), the per-epoch
    rows (``EpochLog``) and the epoch counter."""

    def __init__(self, *, start_method: str, quiet=None, **kwargs):
        super().__init__(start_method=start_method, **kwargs)
        self._quiet = quiet

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if isinstance(self._launcher, _MultiProcessingLauncher):
            self._launcher = _ReturningLauncher(self, start_method=self._start_method)

    def setup_environment(self) -> None:
        if self._quiet is not None:  # a spawned rank starts with Lightning's default (chatty) loggers
            self._quiet()
        super().setup_environment()


class _ReturningLauncher(_MultiProcessingLauncher):
    def launch(self, function, *args, trainer=None, **kwargs):
        # Spawned ranks get the module and data loaders pickled. With torch's default sharing of CPU
        # tensors (file descriptors) that fails here ("bad value(s) in fds_to_keep": a descriptor is
        # passed twice); shared-memory files work, so spawning uses them and the default is put back.
        import torch.multiprocessing as tmp
        before = tmp.get_sharing_strategy()
        if self._start_method == "spawn":
            tmp.set_sharing_strategy("file_system")
        try:
            return super().launch(function, *args, trainer=trainer, **kwargs)
        finally:
            tmp.set_sharing_strategy(before)

    def get_extra_results(self, trainer) -> dict:
        extra = super().get_extra_results(trainer)
        from gastrorad.dl.fit import BestAndLast
        from gastrorad.dl.progress import EpochLog
        state = {"epoch_progress": trainer.fit_loop.epoch_progress.state_dict()}
        for cb in trainer.callbacks:
            if isinstance(cb, BestAndLast):
                state["best"] = {"best_state": cb.best_state, "best_model_score": cb.best_model_score,
                                 "best_epoch": cb.best_epoch}
            elif isinstance(cb, EpochLog):
                state["rows"] = cb.rows
        # through a file, as Lightning sends the final weights: the result pipe holds ~64 kB, and the
        # calling process reads it only once every rank has ended
        path = os.path.join(tempfile.mkdtemp(prefix="gastrorad-fit-"), "state.pt")
        torch.save(state, path)
        extra["gastrorad"] = path
        return extra

    def update_main_process_results(self, trainer, extra: dict) -> None:
        super().update_main_process_results(trainer, extra)
        from gastrorad.dl.fit import BestAndLast
        from gastrorad.dl.progress import EpochLog
        path = extra["gastrorad"]
        state = torch.load(path, weights_only=True)
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)
        trainer.fit_loop.epoch_progress.load_state_dict(state["epoch_progress"])
        for cb in trainer.callbacks:
            if isinstance(cb, BestAndLast) and "best" in state:
                vars(cb).update(state["best"])
            elif isinstance(cb, EpochLog) and "rows" in state:
                cb.rows = state["rows"]


def check_picklable_log(log, start_method: str) -> None:
    """A spawned rank 0 writes the epoch lines through ``log``: it must pickle (a module-level
    function, ``print``, a logger's method), not a lambda or a list's ``append``."""
    if start_method != "spawn" or log is None:
        return
    import pickle
    try:
        pickle.dumps(log)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means the same thing here
        raise ValueError(f"training.strategy ddp_spawn: the log callable {log!r} cannot be sent to the training "
                         f"processes ({type(exc).__name__}); pass a module-level function, print or a logger's "
                         "method") from None

