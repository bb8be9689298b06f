"""Deep features (S5): the penultimate feature maps of a backbone, globally max- or
average-pooled, one vector per patient and phase (mean over a patient's patches)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from gastrorad.config.study import StudyConfig
from gastrorad.dl.data import PatchDataset, build_eval_transform, load_sample_table
from gastrorad.io.atomic import atomic_write_text


@torch.no_grad()
def extract_features(cfg: StudyConfig, net, *, phase: str, pooling: str | None = None,
                     batch_size: int = 32) -> pd.DataFrame:
    """Feature table of one phase: patient_id, cohort, f0000...; written to
    ``<output>/features_<phase>.csv``. ``net`` is a :class:`~gastrorad.dl.backbones.GastroNet`
    (trained, or pretrained from a local file with its head unused)."""
    pooling = pooling or cfg.training.pooling
    samples = load_sample_table(cfg, phase)
    ds = PatchDataset(samples.frame, samples.kind, build_eval_transform(cfg.augment))
    net.eval()
    feats = np.concatenate([net.embed(x, pooling).float().cpu().numpy()
                            for x, _ in DataLoader(ds, batch_size=batch_size, shuffle=False)])
    cols = [f"f{i:04d}" for i in range(feats.shape[1])]
    frame = pd.concat([samples.frame[["patient_id", "cohort"]].reset_index(drop=True),
                       pd.DataFrame(feats, columns=cols)], axis=1)
    table = frame.groupby(["patient_id", "cohort"], sort=True)[cols].mean().reset_index()
    atomic_write_text(cfg.output_dir / f"features_{phase}.csv", table.to_csv(index=False))
    return table
