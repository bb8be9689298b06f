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
def _pooled_features(cfg: StudyConfig, net, frame: pd.DataFrame, kind: str, keys: list[str], pooling: str,
                     batch_size: int) -> pd.DataFrame:
    """Globally pooled features of every sample of ``frame``, averaged over the rows sharing ``keys``."""
    ds = PatchDataset(frame, kind, build_eval_transform(cfg.augment))
    net.eval()
    feats = np.concatenate([net.embed(x, pooling).float().cpu().numpy()
                            for x, _ in DataLoader(ds, batch_size=batch_size, shuffle=False)])
    cols = [f"f{i:04d}" for i in range(feats.shape[1])]
    out = pd.concat([frame[keys].reset_index(drop=True), pd.DataFrame(feats, columns=cols)], axis=1)
    return out.groupby(keys, sort=True)[cols].mean().reset_index()


@torch.no_grad()
def extract_features(cfg: StudyConfig, net, *, phase: str, pooling: str | None = None,
                     batch_size: int = 32) -> pd.DataFrame:
    """Feature table of one phase: patient_id, cohort, f0000...; written to
    ``<output>/features_<phase>.csv``. ``net`` is a :class:`~gastrorad.dl.backbones.GastroNet`
    (trained, or pretrained from a local file with its head unused)."""
    samples = load_sample_table(cfg, phase)
    table = _pooled_features(cfg, net, samples.frame, samples.kind, ["patient_id", "cohort"],
                             pooling or cfg.training.pooling, batch_size)
    atomic_write_text(cfg.output_dir / f"features_{phase}.csv", table.to_csv(index=False))
    return table


@torch.no_grad()
def extract_reader_features(cfg: StudyConfig, net, *, phase: str, pooling: str | None = None,
                            batch_size: int = 32) -> pd.DataFrame | None:
    """Deep features of the re-segmented ROIs (manifest rows with a ``reader``) and of the main
    reading of the same patients (reader ``r1``), for the ICC filter (S5: 30 training patients
    re-segmented a month later). Written to ``<output>/features_<phase>_readers.csv``; None when
    the manifest has no re-segmentation of this phase."""
    pooling = pooling or cfg.training.pooling
    index = pd.read_csv(cfg.output_dir / "patches.csv", dtype={"patient_id": str}, keep_default_na=False)
    index = index[index.phase == phase]
    again = index[index.reader.astype(str) != ""]
    if again.empty:
        return None
    main = index[(index.reader.astype(str) == "") & index.patient_id.isin(set(again.patient_id))
                 & index.lesion_id.isin(set(again.lesion_id))].assign(reader="r1")
    rows = pd.concat([main, again], ignore_index=True)
    frame = rows.assign(index=-1, label=0.0, time=1.0, event=0.0)
    table = _pooled_features(cfg, net, frame, cfg.outcome.kind, ["patient_id", "reader"], pooling, batch_size)
    atomic_write_text(cfg.output_dir / f"features_{phase}_readers.csv", table.to_csv(index=False))
    return table
