"""Training and applying S3's LDLM (lesions x time points) and TDLM (serial markers).

Both are trained on the training cohort only (a stratified validation split inside it picks
the checkpoint), with up to ``train_followups`` follow-ups, and applied to every cohort with
the baseline only (BS), one (1F) or two (2F) follow-ups. The loss is cross-entropy on
OS > ``training.horizon`` plus the Cox partial likelihood (``training.loss: bce_cox``).
Scores are log-risks (higher = worse); the attention read-outs are written per patient.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from gastrorad.config.study import StudyConfig
from gastrorad.errors import InputError, Problem
from gastrorad.io.atomic import atomic_write, atomic_write_text


def _clinical(cfg: StudyConfig) -> pd.DataFrame:
    from gastrorad.models.pipeline import _clinical_with_cohorts
    return _clinical_with_cohorts(cfg)


def _outcome(cfg: StudyConfig, clinical: pd.DataFrame) -> pd.DataFrame:
    o = cfg.outcome
    return clinical.set_index("patient_id")[[o.time, o.event]].rename(columns={o.time: "time", o.event: "event"}) \
        .apply(pd.to_numeric, errors="coerce")


def sequences(cfg: StudyConfig, which: str, clinical: pd.DataFrame):
    from gastrorad.dl.longitudinal.data import lesion_sequences, marker_sequences
    lc = cfg.longitudinal
    if which == "ldlm":
        path = cfg.output_dir / "patches.csv"
        if not path.exists():
            raise InputError(Problem(str(path), "no patch index: run `gastrorad preprocess` first"))
        index = pd.read_csv(path, dtype={"patient_id": str}, keep_default_na=False)
        index = index[(index.phase == cfg.preprocess.phases[0]) & (index.reader.astype(str) == "")]
        return lesion_sequences(index, max_lesions=lc.max_lesions, max_timepoints=lc.max_timepoints)
    train_ids = clinical[clinical.cohort == "training"].patient_id
    return marker_sequences(clinical, lc.markers, train_ids=train_ids, max_timepoints=lc.max_timepoints)


def build_two_level(cfg: StudyConfig, which: str, item_shape: tuple[int, ...]):
    from gastrorad.dl.backbones import create_model
    from gastrorad.dl.longitudinal.model import (CNNExtractor, FrozenCNNExtractor, MarkerEmbedding,
                                                 TwoLevelSurvivalModel)
    lc = cfg.longitudinal
    if which == "ldlm":
        backbone = create_model(cfg.model.backbone, in_channels=item_shape[0], spatial_dims=2)
        if cfg.model.pretrained is not None:
            from gastrorad.dl.backbones import load_pretrained
            load_pretrained(backbone, cfg.resolve(cfg.model.pretrained), cfg.model.pretrained_format)
        if lc.extractor == "frozen":
            extractor = FrozenCNNExtractor(backbone, item_shape, stages=lc.extractor_stages,
                                           pooling=tuple(lc.extractor_pooling))
            dim_in = extractor.out_dim
        else:
            extractor, dim_in = CNNExtractor(backbone), backbone.backbone.out_channels
    else:
        extractor, dim_in = MarkerEmbedding(len(lc.markers), lc.dim), lc.dim
    return TwoLevelSurvivalModel(extractor, dim_in, dim=lc.dim, heads=lc.heads, layers=lc.layers,
                                 max_timepoints=lc.max_timepoints, dropout=lc.dropout)


def _augment(cfg: StudyConfig, seed: int):
    if not cfg.augment.rotate_degrees:
        return None
    from monai import transforms as T
    rot = T.RandRotate(range_x=np.deg2rad(cfg.augment.rotate_degrees), prob=cfg.augment.prob, padding_mode="zeros")
    rot.set_random_state(seed)
    return rot


def train_two_level(cfg: StudyConfig, which: str, *, seed: int, progress: bool = False) -> Path:
    """Train LDLM or TDLM with one seed; returns its checkpoint."""
    import lightning as L

    from gastrorad.dl.longitudinal.data import SequenceDataset
    from gastrorad.dl.module import GastroModule
    from gastrorad.dl.train import _split_patients, fit_and_keep_best

    L.seed_everything(seed, workers=True, verbose=False)
    lc, t = cfg.longitudinal, cfg.training
    clinical = _clinical(cfg)
    seq = sequences(cfg, which, clinical)
    outcome = _outcome(cfg, clinical)
    train = clinical[(clinical.cohort == "training") & clinical.patient_id.isin(set(seq.items))
                     & clinical.patient_id.map(lambda p: bool(seq.items.get(p)))]
    frame = pd.DataFrame({"patient_id": train.patient_id, "event": outcome.loc[train.patient_id, "event"].to_numpy()})
    fit_ids, val_ids = _split_patients(frame, "survival", t.val_fraction, 0, seed)[0]
    kw = dict(max_objects=lc.max_lesions if which == "ldlm" else len(lc.markers), max_timepoints=lc.max_timepoints,
              horizon=t.horizon)
    train_ds = SequenceDataset(seq, list(fit_ids), outcome, followups=lc.train_followups,
                               transform=_augment(cfg, seed) if which == "ldlm" else None, **kw)
    g = torch.Generator()
    g.manual_seed(seed)
    train_dl = DataLoader(train_ds, batch_size=t.batch_size, shuffle=True, generator=g, num_workers=t.num_workers)
    val_dl = None
    if len(val_ids):
        val_dl = DataLoader(SequenceDataset(seq, list(val_ids), outcome, followups=lc.train_followups, **kw),
                            batch_size=t.batch_size, shuffle=False)
    net = build_two_level(cfg, which, seq.item_shape)
    if hasattr(net.extractor, "fit_scale"):  # a frozen extractor: z-score its features on the fitted patients' ROIs
        plain = SequenceDataset(seq, list(fit_ids), None, followups=lc.train_followups, **kw)
        net.extractor.fit_scale(s[0]["x"][s[0]["mask"]] for s in (plain[i] for i in range(len(plain))))
    training = t.model_copy(update={"loss": "bce_cox"}) if t.loss not in ("cox", "bce_cox") else t
    module = GastroModule(net, training, "survival", steps_per_epoch=len(train_dl))
    out = cfg.output_dir / "models" / f"{which}_seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    monitor = "val_c" if val_dl is not None else None
    _, ckpt = fit_and_keep_best(cfg, module, train_dl, val_dl, out, monitor, progress)
    path = out / "model.pt"
    payload = {"gastrorad_two_level": 1, "which": which, "item_shape": list(seq.item_shape),
               "state_dict": module.model.state_dict(), "marker_stats": seq.stats, "seed": seed,
               "best_val_c": float(ckpt.best_model_score) if ckpt is not None and ckpt.best_model_score is not None
               else None}
    with atomic_write(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)
    return path


def load_two_level(cfg: StudyConfig, path: str | Path):
    from gastrorad.dl.checkpoint import read_plain
    ck = read_plain(path)  # weights_only: a bundle's checkpoint never runs code when it is loaded
    if not isinstance(ck, dict) or not ck.get("gastrorad_two_level") or "state_dict" not in ck:
        raise InputError(Problem(str(path), "not a gastrorad two-level (LDLM/TDLM) checkpoint"))
    net = build_two_level(cfg, ck["which"], tuple(ck["item_shape"]))
    net.load_state_dict(ck["state_dict"])
    return net.eval(), ck


@torch.no_grad()
def apply_two_level(cfg: StudyConfig, which: str, checkpoint: str | Path, *, clinical: pd.DataFrame | None = None):
    """Log-risk of every patient with each follow-up limit (columns ``<which>_<BS|1F|2F>``),
    and the attention read-outs (long table: patient, setting, level, object, site, time point, weight)."""
    from gastrorad.dl.longitudinal.data import SequenceDataset
    lc = cfg.longitudinal
    clinical = _clinical(cfg) if clinical is None else clinical
    net, ck = load_two_level(cfg, checkpoint)
    if which == "ldlm":
        seq = sequences(cfg, which, clinical)
    else:  # the training statistics saved with the model, never refitted
        from gastrorad.dl.longitudinal.data import marker_sequences
        seq = marker_sequences(clinical, lc.markers, stats=ck["marker_stats"], max_timepoints=lc.max_timepoints)
    patients = [p for p in clinical.patient_id if seq.items.get(p)]
    kw = dict(max_objects=lc.max_lesions if which == "ldlm" else len(lc.markers), max_timepoints=lc.max_timepoints,
              horizon=cfg.training.horizon)
    scores = pd.DataFrame({"patient_id": patients})
    attention = []
    for name, k in lc.apply_followups.items():
        ds = SequenceDataset(seq, patients, None, followups=k, **kw)
        risks = []
        for start in range(0, len(ds), 16):
            batch = [ds[i][0] for i in range(start, min(start + 16, len(ds)))]
            x = {"x": torch.stack([b["x"] for b in batch]), "mask": torch.stack([b["mask"] for b in batch])}
            risks.append(net(x).numpy())
            att = net.last_attention
            for j, b in enumerate(batch):
                pid = patients[start + j]
                objs = seq.objects[pid]
                for o, (oid, site) in enumerate(objs[:kw["max_objects"]]):
                    attention.append({"patient_id": pid, "setting": name, "level": "object", "object": oid,
                                      "site": site, "timepoint": -1, "weight": float(att["object"][j, o])})
                    for tp in range(lc.max_timepoints):
                        if b["mask"][o, tp]:
                            attention.append({"patient_id": pid, "setting": name, "level": "time", "object": oid,
                                              "site": site, "timepoint": tp, "weight": float(att["time"][j, o, tp])})
        scores[f"{which}_{name}"] = np.concatenate(risks) if risks else []
    return scores, pd.DataFrame(attention)


def train_longitudinal(cfg: StudyConfig, *, progress: bool = False) -> dict:
    """LDLM (and TDLM when markers are configured) for every seed; ``models/longitudinal.json``."""
    if cfg.longitudinal is None:
        raise InputError(Problem("study file", "no 'longitudinal' section", column="longitudinal"))
    which = ["ldlm"] + (["tdlm"] if cfg.longitudinal.markers else [])
    meta = {w: [str(train_two_level(cfg, w, seed=s, progress=progress)) for s in cfg.longitudinal.seeds]
            for w in which}
    atomic_write_text(cfg.output_dir / "models" / "longitudinal.json", json.dumps(meta, indent=2))
    return meta


def score_longitudinal(cfg: StudyConfig) -> pd.DataFrame:
    """``dl_scores.csv`` of S3: one column per model and follow-up setting (first seed), the
    per-seed scores in ``longitudinal_seeds.csv`` and attention in ``attention.csv``."""
    meta = json.loads((cfg.output_dir / "models" / "longitudinal.json").read_text(encoding="utf-8"))
    clinical = _clinical(cfg)
    table = clinical[["patient_id", "cohort"]].copy()
    per_seed, attention = [], []
    for which, ckpts in meta.items():
        for k, ck in enumerate(ckpts):
            s, att = apply_two_level(cfg, which, ck, clinical=clinical)
            if k == 0:
                table = table.merge(s, on="patient_id", how="left")
                attention.append(att.assign(model=which))
            per_seed.append(s.melt(id_vars="patient_id", var_name="score", value_name="value")
                            .assign(seed=cfg.longitudinal.seeds[k]))
    out = cfg.output_dir
    atomic_write_text(out / "dl_scores.csv", table.to_csv(index=False))
    atomic_write_text(out / "longitudinal_seeds.csv", pd.concat(per_seed).to_csv(index=False))
    if attention:
        atomic_write_text(out / "attention.csv", pd.concat(attention).to_csv(index=False))
    return table
