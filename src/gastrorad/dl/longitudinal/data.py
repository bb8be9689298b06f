"""Patients as (objects x time points) for the S3 models.

LDLM: the ROI patches of ``patches.csv`` (``bbox`` mode, one per lesion and time point),
the primary tumour first, then the other lesions in name order, at most ``max_lesions``;
time points 0 (baseline) to ``max_timepoints - 1``. A limit on follow-ups (BS = 0, 1F = 1,
2F = 2) hides later scans, as when the model is applied early in treatment.

TDLM: serial tumour markers from the clinical table (columns ``<marker>_t<k>``), log-
transformed and normalised with the training cohort's mean and SD, one object per marker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from gastrorad.preprocess.cache import load_patches


@dataclass
class Sequences:
    """Per patient: the items (object index, time point, payload) and the object names/sites."""

    items: dict[str, list[tuple[int, int, object]]]
    objects: dict[str, list[tuple[str, str]]]  # patient -> [(object id, site)]
    item_shape: tuple[int, ...]
    stats: dict = field(default_factory=dict)  # marker normalisation (mean, sd) fitted on training


def lesion_sequences(index: pd.DataFrame, *, max_lesions: int, max_timepoints: int) -> Sequences:
    """From the patch index (one phase): patient -> [(lesion slot, time point, patch path)]."""
    items, objects = {}, {}
    shape = None
    for pid, g in index.groupby("patient_id", sort=True):
        lesions = sorted(pd.unique(g.lesion_id), key=lambda s: (s != "primary", str(s)))[:max_lesions]
        slot = {lid: i for i, lid in enumerate(lesions)}
        site = g.drop_duplicates("lesion_id").set_index("lesion_id").lesion_site.to_dict()
        objects[pid] = [(lid, str(site.get(lid, ""))) for lid in lesions]
        rows = []
        for r in g.itertuples():
            if r.lesion_id in slot and int(r.timepoint) < max_timepoints:
                rows.append((slot[r.lesion_id], int(r.timepoint), r.path))
                if shape is None:
                    shape = load_patches(r.path)[0].shape
        items[pid] = rows
    return Sequences(items, objects, tuple(shape or (1, 1, 1)))


def marker_statistics(clinical: pd.DataFrame, markers: list[str], train_ids, max_timepoints: int) -> dict:
    """Mean and SD of log(1 + value) of each marker over the training cohort's measurements."""
    stats = {}
    train = clinical[clinical.patient_id.isin(set(train_ids))]
    for m in markers:
        cols = [f"{m}_t{t}" for t in range(max_timepoints) if f"{m}_t{t}" in clinical.columns]
        vals = np.log1p(pd.to_numeric(train[cols].stack(), errors="coerce").dropna().to_numpy(float))
        stats[m] = (float(vals.mean()), float(vals.std(ddof=1)) or 1.0) if len(vals) > 1 else (0.0, 1.0)
    return stats


def marker_sequences(clinical: pd.DataFrame, markers: list[str], *, max_timepoints: int, train_ids=None,
                     stats: dict | None = None) -> Sequences:
    """Serial markers: log(1 + value), z-scored with the training cohort's mean and SD per marker
    (``stats`` saved with a model, or fitted on ``train_ids``)."""
    if stats is None:
        stats = marker_statistics(clinical, markers, train_ids if train_ids is not None else [], max_timepoints)
    items, objects = {}, {}
    for r in clinical.itertuples(index=False):
        rows = []
        for j, m in enumerate(markers):
            mean, sd = stats[m]
            for t in range(max_timepoints):
                v = pd.to_numeric(getattr(r, f"{m}_t{t}", np.nan), errors="coerce")
                if pd.notna(v):
                    rows.append((j, t, np.array([(np.log1p(float(v)) - mean) / sd, j / max(len(markers), 1)],
                                                dtype=np.float32)))
        items[r.patient_id] = rows
        objects[r.patient_id] = [(m, "marker") for m in markers]
    return Sequences(items, objects, (2,), stats)


def horizon_label(time: float, event: int, horizon: float) -> float:
    """OS beyond the horizon = 1, death before it = 0, censored before it = -1 (left out of the CE term)."""
    if time > horizon:
        return 1.0
    return 0.0 if event == 1 else -1.0


class SequenceDataset(Dataset):
    """One sample per patient: {"x": (L, T, *item), "mask": (L, T)} and its survival target."""

    def __init__(self, seq: Sequences, patients: list[str], outcome: pd.DataFrame | None, *, max_objects: int,
                 max_timepoints: int, followups: int | None = None, horizon: float = 12.0, transform=None):
        self.seq, self.patients = seq, list(patients)
        self.outcome = outcome
        self.L, self.T = max_objects, max_timepoints
        self.limit = self.T - 1 if followups is None else min(followups, self.T - 1)
        self.horizon, self.transform = horizon, transform

    def __len__(self) -> int:
        return len(self.patients)

    def __getitem__(self, i: int):
        pid = self.patients[i]
        x = torch.zeros((self.L, self.T, *self.seq.item_shape), dtype=torch.float32)
        mask = torch.zeros((self.L, self.T), dtype=torch.bool)
        for slot, t, payload in self.seq.items.get(pid, []):
            if slot >= self.L or t > self.limit:
                continue
            arr = load_patches(payload)[0] if isinstance(payload, str) else payload
            item = torch.as_tensor(np.ascontiguousarray(arr), dtype=torch.float32)
            if self.transform is not None:
                item = torch.as_tensor(self.transform(item), dtype=torch.float32)
            x[slot, t] = item
            mask[slot, t] = True
        target = {"time": torch.tensor(0.0), "event": torch.tensor(0.0), "label": torch.tensor(-1.0)}
        if self.outcome is not None and pid in self.outcome.index:
            t_, e_ = float(self.outcome.loc[pid, "time"]), float(self.outcome.loc[pid, "event"])
            if np.isfinite(t_) and np.isfinite(e_):
                target = {"time": torch.tensor(t_), "event": torch.tensor(e_),
                          "label": torch.tensor(horizon_label(t_, int(e_), self.horizon))}
        return {"x": x, "mask": mask}, target
