"""Deep features (S2, S5 and the frozen-feature path): a backbone's feature maps, pooled from
the last stage (the paper's setting) or from every stage, one vector per patient and phase
(mean over a patient's patches).

Poolings of one stage's maps ``f`` (B, C, ...):

- ``avg`` / ``max``: global average / maximum over the whole patch (S5: max of the last stage);
- ``roi_avg`` / ``roi_std`` / ``roi_max`` / ``roi_p10`` / ``roi_p90``: mean, standard deviation,
  maximum, 10th and 90th percentile inside the ROI,
  weighting each cell of the map by the fraction of it the ROI mask covers (the mask comes
  from the patch's ``mask`` channel). ``roi_std`` is the deep analogue of a texture
  heterogeneity feature: how much a filter's response varies across the tumour.

Features are computed once per patch file and cached under ``<output>/cache/features``, keyed
by a digest of the network's weights, the bytes of the patch and the pooling spec; a rerun with the same network reads the
cache. Inference runs in ``torch.inference_mode`` in batches.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from gastrorad.config.study import POOLINGS, StudyConfig
from gastrorad.dl.data import build_eval_transform, load_sample_table
from gastrorad.errors import InputError, Problem
from gastrorad.io.atomic import atomic_write, atomic_write_text
from gastrorad.io.hashing import code_hash
from gastrorad.preprocess.cache import load_patch_meta, load_patches
from gastrorad.preprocess.patches import holds_samples

#: ``roi_p10`` / ``roi_p90``: the 10th / 90th percentile of a channel's responses inside the ROI (a dark
#: necrotic core or a bright enhancing rim moves the tail of the distribution more than its mean)
ROI_QUANTILES = {"roi_p10": 0.10, "roi_p90": 0.90}
CACHE_VERSION = 1


def weights_digest(net: torch.nn.Module) -> str:
    """BLAKE2b of every tensor of the network's state (names, shapes, dtypes and bytes)."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(net.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def pool_stage(f: torch.Tensor, how: str, weight: torch.Tensor | None) -> torch.Tensor:
    """Pool feature maps ``f`` (B, C, *S) to (B, C). ``weight`` (B, 1, *S) in [0, 1] is the ROI
    coverage of each cell, needed by the ``roi_*`` poolings."""
    dims = tuple(range(2, f.ndim))
    if how == "avg":
        return f.mean(dim=dims)
    if how == "max":
        return f.amax(dim=dims)
    if weight is None:
        raise ValueError(f"pooling '{how}' needs the ROI mask (a patch 'mask' channel)")
    total = weight.sum(dim=dims).clamp_min(1e-8)
    mean = (f * weight).sum(dim=dims) / total
    if how == "roi_avg":
        return mean
    if how == "roi_std":
        centred = f - mean.reshape(*mean.shape, *([1] * len(dims)))
        return ((centred ** 2 * weight).sum(dim=dims) / total).clamp_min(0).sqrt()
    if how == "roi_max":
        return f.masked_fill(weight <= 0, float("-inf")).amax(dim=dims)
    if how in ROI_QUANTILES:
        return roi_quantile(f, weight, ROI_QUANTILES[how])
    raise ValueError(f"unknown pooling '{how}'; choose from {POOLINGS}")


def roi_quantile(f: torch.Tensor, weight: torch.Tensor, q: float) -> torch.Tensor:
    """Weighted ``q``-quantile of each channel's responses inside the ROI (B, C): the cells'
    responses sorted, each weighted by its ROI coverage, the first whose cumulative weight
    reaches ``q`` of the total (the inverse of the weighted empirical distribution)."""
    flat = f.flatten(2)
    w = weight.flatten(2).expand_as(flat)
    values, order = flat.sort(dim=-1)
    cum = torch.gather(w, -1, order).cumsum(dim=-1)
    target = q * cum[..., -1:].clamp_min(1e-8)
    idx = torch.searchsorted(cum.contiguous(), target.contiguous()).clamp_max(flat.shape[-1] - 1)
    return torch.gather(values, -1, idx).squeeze(-1)


def erode(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Binary erosion of (B, 1, *S) masks by ``pixels`` in-plane (a square/cubic element);
    a sample whose ROI would vanish keeps its mask."""
    m = (mask > 0.5).float()
    if pixels <= 0:
        return m
    k = 2 * pixels + 1
    if m.ndim == 4:
        inner = 1 - F.max_pool2d(1 - m, k, stride=1, padding=pixels)
    else:
        inner = 1 - F.max_pool3d(1 - m, (1, k, k), stride=1, padding=(0, pixels, pixels))
    gone = inner.flatten(1).sum(1) <= 0
    inner[gone] = m[gone]
    return inner


def roi_weight(mask: torch.Tensor, shape: tuple[int, ...], erosion: int = 0) -> torch.Tensor:
    """Fraction of each cell of a ``shape`` grid covered by the binary ``mask`` (B, 1, *S),
    after eroding it by ``erosion`` pixels (the ROI's boundary ring is mostly partial volume
    with gas, fluid or fat); a sample whose mask is empty gets uniform weights."""
    m = erode(mask, erosion)
    pool = F.adaptive_avg_pool2d if m.ndim == 4 else F.adaptive_avg_pool3d
    w = pool(m, shape)
    empty = w.flatten(1).sum(1) <= 0
    if empty.any():
        w[empty] = 1.0
    return w


class FeatureExtractor:
    """Pooled features of a :class:`~gastrorad.dl.backbones.GastroNet` for patch arrays.

    ``stages``: ``"last"`` or ``"all"``; ``pooling``: names from :data:`POOLINGS`;
    ``channels``: the patch's channel names (the ``mask`` channel gives the ROI; it is fed to
    the network only when the network takes every channel).
    """

    def __init__(self, net, *, stages: str, pooling: list[str], channels: list[str], batch_size: int = 32,
                 roi_erosion: int = 0, tta: str = "none"):
        for p in pooling:
            if p not in POOLINGS:
                raise ValueError(f"unknown pooling '{p}'; choose from {', '.join(POOLINGS)}")
        self.net = net.eval()
        self.stages = stages
        self.pooling = list(pooling)
        self.batch_size = batch_size
        self.roi_erosion = roi_erosion
        if tta not in ("none", "dihedral"):
            raise ValueError(f"unknown features.tta '{tta}'; choose none or dihedral")
        self.tta = tta
        self.mask_index = channels.index("mask") if "mask" in channels else None
        in_ch = _in_channels(net)
        if in_ch == len(channels) or self.mask_index is None:
            self.input_index = list(range(len(channels)))
        else:
            self.input_index = [i for i in range(len(channels)) if i != self.mask_index]
        roi = [p for p in self.pooling if p.startswith("roi_")]
        if roi and self.mask_index is None:
            raise ValueError(f"ROI poolings ({', '.join(roi)}) need a 'mask' channel in the patches "
                             "(e.g. preprocess.patch.mask_channel: true)")
        self.names: list[str] | None = None

    def key(self) -> dict:
        return {"v": CACHE_VERSION, "code": code_hash("dl", "models"), "weights": weights_digest(self.net), "stages": self.stages,
                "pooling": self.pooling, "inputs": self.input_index, "mask": self.mask_index,
                "erosion": self.roi_erosion, **({"tta": self.tta} if self.tta != "none" else {})}

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> np.ndarray:
        """(B, C, ...) patches -> (B, n_features) float32; with ``tta="dihedral"`` the mean over
        the 8 in-plane symmetries of each patch (the last two axes)."""
        out = []
        for start in range(0, len(x), self.batch_size):
            xb = x[start:start + self.batch_size].float()
            views = dihedral_views(xb) if self.tta == "dihedral" else [xb]
            pooled = [self._pooled(v) for v in views]
            out.append(torch.stack(pooled).mean(dim=0).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def _pooled(self, xb: torch.Tensor) -> torch.Tensor:
        inputs = xb[:, self.input_index]
        maps = self.net.stage_features(inputs) if self.stages == "all" else [("last", self.net.features(inputs))]
        mask = xb[:, self.mask_index:self.mask_index + 1] if self.mask_index is not None else None
        cols, names = [], []
        for stage, f in maps:
            w = roi_weight(mask, tuple(f.shape[2:]), self.roi_erosion) if mask is not None else None
            for how in self.pooling:
                cols.append(pool_stage(f, how, w))
                names += [f"{stage}_{how}_{i:04d}" for i in range(f.shape[1])]
        self.names = names
        return torch.cat(cols, dim=1)


def dihedral_views(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 in-plane symmetries of (B, C, ..., H, W): rotations by 0, 90, 180 and 270 degrees,
    each also mirrored left/right."""
    rots = [torch.rot90(x, k, dims=(-2, -1)) for k in range(4)]
    return rots + [torch.flip(r, dims=(-1,)) for r in rots]


def _in_channels(net) -> int:
    key = "backbone." + net.backbone.first_conv
    return int(net.state_dict()[key].shape[1])


def _cache_path(cfg: StudyConfig, patch_path: str, key: dict) -> Path:
    h = hashlib.blake2b(digest_size=16)
    with open(patch_path, "rb") as fh:  # the patch's bytes: the same patch anywhere hits the same entry
        patch = hashlib.blake2b(fh.read(), digest_size=16).hexdigest()
    h.update(json.dumps({**key, "patch": patch}, sort_keys=True).encode())
    return cfg.output_dir / "cache" / "features" / f"{h.hexdigest()}.npz"


def _cached_features(cache: Path) -> tuple[np.ndarray, list[str]] | None:
    if not cache.exists():
        return None
    with np.load(cache, allow_pickle=False) as z:
        return z["features"], [str(n) for n in z["names"]]


def per_slice_samples(arr: np.ndarray, channels: list[str]) -> np.ndarray:
    """A (C, H, W) stack of CT slices plus a mask channel as (n_slices, 2, H, W): each slice with the mask."""
    m = channels.index("mask")
    return np.stack([np.stack([arr[j], arr[m]]) for j in range(arr.shape[0]) if j != m])


def feature_channels(cfg: StudyConfig, channels: list[str]) -> list[str]:
    """The channels one sample has as the feature network sees it (one slice and the mask with per_slice)."""
    if cfg.features.per_slice:
        if "mask" not in channels or len(channels) < 3:
            raise InputError(Problem("study file", "features.per_slice needs stack25d patches with several slices "
                                     f"and a mask channel; the patches have {channels}", column="features.per_slice"))
        return ["slice+0", "mask"]
    return channels


def _patch_tensor(cfg: StudyConfig, path: str, transform) -> torch.Tensor:
    """The samples of one patch file as a (samples, C, ...) tensor, as the network sees them."""
    arr, channels, _ = load_patches(path)
    if cfg.features.per_slice:
        feature_channels(cfg, channels)  # refuses patches without slices and mask
        x = torch.as_tensor(per_slice_samples(arr, channels), dtype=torch.float32)
        return torch.stack([torch.as_tensor(transform(s), dtype=torch.float32) for s in x]) if transform else x
    patch = cfg.preprocess.patch
    as_slices = holds_samples(arr, patch)
    x = torch.as_tensor(arr if as_slices else arr[None], dtype=torch.float32)
    if transform is not None:
        x = torch.stack([torch.as_tensor(transform(s), dtype=torch.float32) for s in x])
    return x


def _store_features(cache: Path, feats: np.ndarray, names: list[str]) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(cache, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, features=feats, names=np.asarray(names))


def _files_features(cfg: StudyConfig, extractor: FeatureExtractor, paths: list[str], key: dict, transform,
                    progress=None) -> list[tuple[np.ndarray, list[str]]]:
    """Features of every sample of each patch file: (n_samples, n_features) per file, cached per
    file. Uncached files are stacked into batches of ``features.batch_size`` samples, so small
    patches (one slice per patient) still run through the network in batches."""
    out: list = [None] * len(paths)
    pending: list[tuple[int, Path, torch.Tensor]] = []

    def flush():
        if not pending:
            return
        feats = extractor(torch.cat([x for _, _, x in pending]))
        names = list(extractor.names or [])
        start = 0
        for i, cache, x in pending:
            f = feats[start:start + len(x)]
            start += len(x)
            _store_features(cache, f, names)
            out[i] = (f, names)
        pending.clear()

    for i, path in enumerate(paths):
        cache = _cache_path(cfg, path, key)
        hit = _cached_features(cache)
        if hit is not None:
            out[i] = hit
        else:
            pending.append((i, cache, _patch_tensor(cfg, path, transform)))
            if sum(len(x) for _, _, x in pending) >= extractor.batch_size:
                flush()
        if progress is not None:
            progress(i + 1, len(paths))
    flush()
    return out


def _extractor(cfg: StudyConfig, net, frame: pd.DataFrame, pooling: str | list[str] | None) -> FeatureExtractor:
    fc = cfg.features
    pool = pooling or fc.pooling or [cfg.training.pooling]
    pool = [pool] if isinstance(pool, str) else list(pool)
    first = frame.path.iloc[0]
    _, channels, _ = load_patches(first)
    return FeatureExtractor(net, stages=fc.stages, pooling=pool, channels=feature_channels(cfg, channels),
                            batch_size=fc.batch_size,
                            roi_erosion=fc.roi_erosion, tta=fc.tta)


def _sample_mean(feats: np.ndarray, path: str) -> np.ndarray:
    """A patch file's features averaged over its samples, weighted by ``meta["sample_weights"]``
    when the patch mode gives them (roi_slices: each slice's ROI pixels)."""
    if len(feats) == 1:
        return feats[0]
    weights = load_patch_meta(path).get("sample_weights")
    if weights is None or len(weights) != len(feats):
        return feats.mean(axis=0)
    return np.average(feats, axis=0, weights=np.asarray(weights, float))


def _pooled_features(cfg: StudyConfig, net, frame: pd.DataFrame, keys: list[str], pooling,
                     progress=None) -> pd.DataFrame:
    """Pooled features of every patch file of ``frame``, averaged over the rows sharing ``keys``."""
    files = frame.drop_duplicates("path").reset_index(drop=True)
    extractor = _extractor(cfg, net, files, pooling)
    key = {**extractor.key(), "per_slice": cfg.features.per_slice}
    transform = build_eval_transform(cfg.augment)
    got = _files_features(cfg, extractor, list(files.path), key, transform, progress)
    rows = [_sample_mean(feats, path) for (feats, _), path in zip(got, files.path)]
    cols = list(got[0][1] if got else [])
    feats = pd.DataFrame(np.vstack(rows), columns=cols)
    out = pd.concat([files[keys].reset_index(drop=True), feats], axis=1)
    return out.groupby(keys, sort=True)[cols].mean().reset_index()


def extract_features(cfg: StudyConfig, net, *, phase: str, pooling: str | list[str] | None = None,
                     batch_size: int | None = None, progress=None) -> pd.DataFrame:
    """Feature table of one phase: patient_id, cohort, then one column per feature named
    ``<stage>_<pooling>_<channel>``; written to ``<output>/features_<phase>.csv``. ``net`` is a
    :class:`~gastrorad.dl.backbones.GastroNet` (trained, pretrained, or at random
    initialisation with a fixed seed); its head is unused."""
    samples = load_sample_table(cfg, phase)
    if batch_size is not None:
        cfg = cfg.model_copy(update={"features": cfg.features.model_copy(update={"batch_size": batch_size})})
    table = _pooled_features(cfg, net, samples.frame, ["patient_id", "cohort"], pooling, progress)
    atomic_write_text(cfg.output_dir / f"features_{phase}.csv", table.to_csv(index=False))
    return table


def extract_reader_features(cfg: StudyConfig, net, *, phase: str, pooling: str | list[str] | None = None,
                            progress=None) -> pd.DataFrame | None:
    """Deep features of the re-segmented ROIs (manifest rows with a ``reader``) and of the main
    reading of the same patients (reader ``r1``), for the ICC filter (S5: 30 training patients
    re-segmented a month later). Written to ``<output>/features_<phase>_readers.csv``; None when
    the manifest has no re-segmentation of this phase."""
    index = pd.read_csv(cfg.output_dir / "patches.csv", dtype={"patient_id": str}, keep_default_na=False)
    index = index[index.phase == phase]
    again = index[index.reader.astype(str) != ""]
    if again.empty:
        return None
    main = index[(index.reader.astype(str) == "") & index.patient_id.isin(set(again.patient_id))
                 & index.lesion_id.isin(set(again.lesion_id))].assign(reader="r1")
    rows = pd.concat([main, again], ignore_index=True)
    table = _pooled_features(cfg, net, rows, ["patient_id", "reader"], pooling, progress)
    atomic_write_text(cfg.output_dir / f"features_{phase}_readers.csv", table.to_csv(index=False))
    return table


def feature_cache_size(cfg: StudyConfig) -> int:
    """Bytes held by the feature cache of a run."""
    root = cfg.output_dir / "cache" / "features"
    return sum(f.stat().st_size for f in root.glob("*.npz")) if root.exists() else 0


__all__ = ["POOLINGS", "FeatureExtractor", "extract_features", "extract_reader_features", "pool_stage", "roi_weight",
           "weights_digest", "feature_cache_size"]
