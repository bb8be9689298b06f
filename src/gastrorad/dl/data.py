"""Datasets of ROI patches for training and scoring.

Samples come from the preprocess index (``patches.csv``) joined with the clinical table
(outcome) and the cohorts. Patch sets of shape (N, 1, H, W) (``slices`` mode, or
``volume3d`` as slices) give N samples that carry their patient's label; (C, H, W) and
(1, D, H, W) sets give one sample. Arrays are read lazily from the cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from gastrorad.config.study import AugmentConfig, StudyConfig
from gastrorad.data.cohorts import assign_cohorts
from gastrorad.data.tables import read_table
from gastrorad.errors import InputError, Problem
from gastrorad.preprocess.cache import load_patches
from gastrorad.preprocess.patches import holds_samples


@dataclass
class SampleTable:
    """One row per training sample: patient_id, cohort, phase, lesion_id, path, index
    (slice within the set, or -1), label (binary) or time/event (survival)."""

    frame: pd.DataFrame
    kind: str
    channels: int
    spatial_dims: int


def load_sample_table(cfg: StudyConfig, phase: str | None = None) -> SampleTable:
    """Samples of one phase (default: the first configured) for every patient with patches."""
    index_path = cfg.output_dir / "patches.csv"
    if not index_path.exists():
        raise InputError(Problem(str(index_path), "no patch index: run `gastrorad preprocess` first"))
    index = pd.read_csv(index_path, dtype={"patient_id": str}, keep_default_na=False)
    phase = phase or cfg.preprocess.phases[0]
    index = index[index.phase == phase]
    if "reader" in index.columns:  # re-segmentations (a named reader) feed the ICC filter, not the model
        index = index[index.reader.astype(str) == ""]
    clinical = read_table(cfg.clinical_path)
    cohorts, problems = assign_cohorts(clinical, cfg, str(cfg.clinical_path))
    if problems:
        raise InputError(problems)
    out = cfg.outcome
    cols = [out.label] if out.kind == "binary" else [out.time, out.event]
    info = clinical.set_index("patient_id")[cols]
    rows = []
    channels = spatial_dims = None
    for r in index.itertuples():
        arr, ch, _ = load_patches(r.path)
        if holds_samples(arr, cfg.preprocess.patch):
            items = range(arr.shape[0])
            channels, spatial_dims = arr.shape[1], 2
        else:
            items = [-1]
            channels = arr.shape[0]
            spatial_dims = arr.ndim - 1
        for i in items:
            row = {"patient_id": r.patient_id, "cohort": cohorts.get(r.patient_id), "phase": phase,
                   "lesion_id": r.lesion_id, "path": r.path, "index": i}
            for c in cols:
                row[c] = info.loc[r.patient_id, c]
            rows.append(row)
    frame = pd.DataFrame(rows)
    if out.kind == "binary":
        frame = frame.rename(columns={out.label: "label"})
    else:
        frame = frame.rename(columns={out.time: "time", out.event: "event"})
    return SampleTable(frame, out.kind, int(channels or 1), int(spatial_dims or 2))


def build_augment(aug: AugmentConfig, spatial_dims: int, seed: int):
    """MONAI transforms for training (array, channel-first)."""
    from monai import transforms as T
    p = aug.prob
    ops = []
    if aug.flip:
        ops += [T.RandFlip(prob=p, spatial_axis=0), T.RandFlip(prob=p, spatial_axis=1)]
    if aug.rot90 and spatial_dims == 2:
        ops.append(T.RandRotate90(prob=p, max_k=3))
    if aug.rotate_degrees:
        r = float(np.deg2rad(aug.rotate_degrees))
        ops.append(T.RandRotate(range_x=r, prob=p, padding_mode="border") if spatial_dims == 2 else
                   T.RandRotate(range_z=r, prob=p, padding_mode="border"))
    if aug.scale or aug.shift:
        ops.append(T.RandAffine(prob=p, scale_range=[aug.scale] * spatial_dims if aug.scale else None,
                                translate_range=[aug.shift] * spatial_dims if aug.shift else None,
                                padding_mode="border"))
    if aug.gaussian_blur:
        s = (0.25, aug.gaussian_blur)
        ops.append(T.RandGaussianSmooth(sigma_x=s, sigma_y=s, sigma_z=s, prob=p))
    if aug.random_crop:
        ops.append(T.RandSpatialCrop(roi_size=aug.random_crop, random_size=False))
    comp = T.Compose(ops)
    comp.set_random_state(seed=seed)
    return comp


def build_eval_transform(aug: AugmentConfig):
    from monai import transforms as T
    if aug.random_crop:
        return T.CenterSpatialCrop(roi_size=aug.random_crop)
    return None


class PatchDataset(Dataset):
    """Samples of a :class:`SampleTable` frame; returns (x, target dict)."""

    def __init__(self, frame: pd.DataFrame, kind: str, transform=None, horizon: float | None = None):
        self.frame = frame.reset_index(drop=True)
        self.kind = kind
        self.transform = transform
        self.horizon = horizon
        self._cache: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.frame)

    def _array(self, path: str) -> np.ndarray:
        if path not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[path] = load_patches(path)[0]
        return self._cache[path]

    def __getitem__(self, i: int):
        r = self.frame.iloc[i]
        arr = self._array(r.path)
        x = arr[int(r["index"])] if r["index"] >= 0 else arr
        x = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)
        if self.transform is not None:
            # MONAI returns a MetaTensor: a plain tensor keeps its metadata handling out of the network and the loss
            x = torch.as_tensor(self.transform(x), dtype=torch.float32).as_subclass(torch.Tensor)
        if self.kind == "binary":
            return x, {"label": torch.tensor(float(r.get("label", 0.0)))}
        target = {"time": torch.tensor(float(r["time"])), "event": torch.tensor(float(r["event"]))}
        if self.horizon is not None:
            # event-free beyond the horizon = 1, event before it = 0, censored before it = unknown (-1)
            beyond = float(r["time"]) > self.horizon
            target["label"] = torch.tensor(1.0 if beyond else (0.0 if r["event"] == 1 else -1.0))
        return x, target
