"""Progressive Distill (seed 003): a teacher trained with label-smoothed cross-entropy, then
students of equal or larger size trained on the KD loss (Eq. 1) with model noise (dropout,
stochastic depth); each student becomes the next teacher. Every iteration's validation
metric is recorded; the last student is the model.
"""

from __future__ import annotations

import json
import time

from gastrorad.config.study import StudyConfig
from gastrorad.dl.checkpoint import load_checkpoint
from gastrorad.dl.data import SampleTable
from gastrorad.dl.fit import Log, TrainResult, fit_one, model_dir, split_patients
from gastrorad.io.atomic import atomic_write_text


def progressive_distill(cfg: StudyConfig, samples: SampleTable, *, progress: bool = False,
                        log: Log | None = None) -> TrainResult:
    t0 = time.perf_counter()
    d = cfg.training.distill
    if samples.kind != "binary":
        raise ValueError("Progressive Distill is defined for binary outcomes")
    (fit_ids, val_ids), = split_patients(cfg, samples, folds=0)
    chain = list(d.chain) or [cfg.model.backbone] * d.iterations
    # Teacher: label-smoothed CE, no KD (cfg.training.distill ignored without a teacher).
    path, hist = fit_one(cfg, samples, fit_ids, val_ids, tag="pd_teacher", seed=cfg.seed, progress=progress, log=log)
    history = [{"iteration": 0, "backbone": cfg.model.backbone, **hist[0]}]
    teacher = load_checkpoint(path)
    checkpoints = [path]
    for i, backbone in enumerate(chain, start=1):
        path, hist = fit_one(cfg, samples, fit_ids, val_ids, tag=f"pd_student{i}", seed=cfg.seed + i, progress=progress,
                             backbone=backbone, dropout=d.student_dropout, stochastic_depth=d.student_stochastic_depth,
                             teacher=teacher, log=log)
        history.append({"iteration": i, "backbone": backbone, **hist[0]})
        teacher = load_checkpoint(path)
        checkpoints.append(path)
    atomic_write_text(model_dir(cfg) / "models.json", json.dumps({"checkpoints": [str(checkpoints[-1])],
                                                                  "all_iterations": [str(p) for p in checkpoints],
                                                                  "history": history}, indent=2))
    return TrainResult([checkpoints[-1]], history, time.perf_counter() - t0)
