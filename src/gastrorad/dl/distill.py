"""Progressive Distill (seed 003): a teacher trained with label-smoothed cross-entropy, then
students of equal or larger size trained on the KD loss (Eq. 1) with model noise (dropout,
stochastic depth); each student becomes the next teacher. Every iteration's validation
metric is recorded; the last student is the model.
"""

from __future__ import annotations

import json
import time

from gastrorad.config.study import StudyConfig
from gastrorad.dl.data import SampleTable
from gastrorad.io.atomic import atomic_write_text


def progressive_distill(cfg: StudyConfig, samples: SampleTable, *, progress: bool = False):
    from gastrorad.dl.train import TrainResult, _split_patients, fit_one, load_checkpoint, model_dir

    t0 = time.perf_counter()
    d = cfg.training.distill
    if samples.kind != "binary":
        raise ValueError("Progressive Distill is defined for binary outcomes")
    train = samples.frame[samples.frame.cohort == "training"]
    (fit_ids, val_ids), = _split_patients(train, "binary", cfg.training.val_fraction, 0, cfg.seed)
    chain = list(d.chain) or [cfg.model.backbone] * d.iterations
    # Teacher: label-smoothed CE, no KD (cfg.training.distill ignored without a teacher).
    path, hist = fit_one(cfg, samples, fit_ids, val_ids, tag="pd_teacher", seed=cfg.seed, progress=progress)
    history = [{"iteration": 0, "backbone": cfg.model.backbone, **hist[0]}]
    teacher = load_checkpoint(path)
    checkpoints = [path]
    for i, backbone in enumerate(chain, start=1):
        path, hist = fit_one(cfg, samples, fit_ids, val_ids, tag=f"pd_student{i}", seed=cfg.seed + i, progress=progress,
                             backbone=backbone, dropout=d.student_dropout, stochastic_depth=d.student_stochastic_depth,
                             teacher=teacher)
        history.append({"iteration": i, "backbone": backbone, **hist[0]})
        teacher = load_checkpoint(path)
        checkpoints.append(path)
    atomic_write_text(model_dir(cfg) / "models.json", json.dumps({"checkpoints": [str(checkpoints[-1])],
                                                                  "all_iterations": [str(p) for p in checkpoints],
                                                                  "history": history}, indent=2))
    return TrainResult([checkpoints[-1]], history, time.perf_counter() - t0)
