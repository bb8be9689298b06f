"""The two-level attention framework of S3 (seed 002, He et al. 2024): LDLM and TDLM.

A patient is a set of objects (lesions, or tumour markers) each followed over time points::

    x: (B, L objects, T time points, ...)   mask: (B, L, T) True where observed

1. an extractor turns every observed item into a vector (LDLM: a CNN such as ResNet-18 on
   each ROI patch, trained with the rest or frozen (:class:`FrozenCNNExtractor`); TDLM: a
   linear embedding of the marker's normalised value);
2. the TH-former (temporal heterogeneity transformer) runs over the time points of each
   object, with a learnable temporal position embedding (baseline, 1st follow-up, ...) and a
   learnable temporal token whose output summarises the object;
3. the OH-former (object heterogeneity transformer) runs over the objects of a patient with
   a learnable aggregation token (missing objects masked out), whose output is the patient's
   descriptor, whatever the number of lesions;
4. an MLP maps it to one number: the log-risk (the logit of OS > horizon is its negative),
   trained with cross-entropy on OS > 12 months plus the Cox partial likelihood.

Attention weights of the last layer of each former are kept (``last_attention``) for the
read-outs of the paper's Fig. 6: over time points per lesion, and over lesions per patient.
"""

from __future__ import annotations

import torch
from torch import nn


class AttentionBlock(nn.Module):
    """Pre-norm transformer block that also returns its attention weights (heads averaged)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.1):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(int(dim * mlp_ratio), dim))

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None):
        h = self.norm1(x)
        out, weights = self.attn(h, h, h, key_padding_mask=pad, need_weights=True, average_attn_weights=True)
        x = x + out
        x = x + self.mlp(self.norm2(x))
        return x, weights


class Former(nn.Module):
    """A stack of attention blocks with a learnable summary token in front of the sequence."""

    def __init__(self, dim: int, heads: int, layers: int, dropout: float = 0.1):
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.token, std=0.02)
        self.blocks = nn.ModuleList([AttentionBlock(dim, heads, dropout=dropout) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, seq: torch.Tensor, observed: torch.Tensor):
        """seq (N, S, D), observed (N, S) bool -> summary (N, D) and the token's attention over the S items
        (last block, heads averaged, renormalised over the items)."""
        n = seq.shape[0]
        x = torch.cat([self.token.expand(n, -1, -1), seq], dim=1)
        pad = torch.cat([torch.zeros(n, 1, dtype=torch.bool, device=seq.device), ~observed], dim=1)
        weights = None
        for blk in self.blocks:
            x, weights = blk(x, pad)
        share = weights[:, 0, 1:]  # the token's attention over the items (its attention to itself left out)
        return self.norm(x[:, 0]), share / share.sum(dim=1, keepdim=True).clamp_min(1e-12)


class TwoLevelSurvivalModel(nn.Module):
    """TH-former over time per object, OH-former over objects, MLP head (one log-risk)."""

    def __init__(self, extractor: nn.Module, feature_dim: int, *, dim: int = 128, heads: int = 4, layers: int = 1,
                 max_timepoints: int = 5, dropout: float = 0.1):
        super().__init__()
        self.extractor = extractor
        self.project = nn.Linear(feature_dim, dim)
        self.time_embedding = nn.Embedding(max_timepoints, dim)
        self.th_former = Former(dim, heads, layers, dropout)
        self.oh_former = Former(dim, heads, layers, dropout)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim // 2), nn.GELU(), nn.Dropout(dropout),
                                  nn.Linear(dim // 2, 1))
        self.last_attention: dict[str, torch.Tensor] = {}

    def forward(self, batch: dict) -> torch.Tensor:
        x, mask = batch["x"], batch["mask"].bool()
        b, n_obj, n_t = mask.shape
        feats = torch.zeros(b, n_obj, n_t, self.project.in_features, device=mask.device,
                            dtype=self.project.weight.dtype)
        if mask.any():
            feats[mask] = self.extractor(x[mask]).to(feats.dtype)  # only observed items go through the extractor
        h = self.project(feats) + self.time_embedding(torch.arange(n_t, device=mask.device))[None, None]
        obj_observed = mask.any(dim=2)  # (B, L)
        flat_h, flat_m = h.reshape(b * n_obj, n_t, -1), mask.reshape(b * n_obj, n_t)
        # an object with no observed time point gets one dummy key so attention is defined; it is masked later
        safe = flat_m.clone()
        safe[~flat_m.any(dim=1), 0] = True
        obj, t_att = self.th_former(flat_h, safe)
        obj = obj.reshape(b, n_obj, -1)
        t_att = (t_att * flat_m).reshape(b, n_obj, n_t)
        safe_obj = obj_observed.clone()
        safe_obj[~obj_observed.any(dim=1), 0] = True
        patient, o_att = self.oh_former(obj, safe_obj)
        self.last_attention = {"time": t_att.detach(), "object": (o_att * obj_observed).detach()}
        return self.head(patient).reshape(-1)


class MarkerEmbedding(nn.Module):
    """TDLM's extractor: a scalar (normalised marker value) -> a vector, one embedding per marker."""

    def __init__(self, n_markers: int, dim: int):
        super().__init__()
        self.value = nn.Sequential(nn.Linear(2, dim), nn.GELU(), nn.Linear(dim, dim))
        self.n_markers = n_markers

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """items (N, 2): normalised value and the marker's index / n_markers."""
        return self.value(items)


class CNNExtractor(nn.Module):
    """LDLM's extractor: a registered 2D backbone's pooled features of each ROI patch."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.backbone.embed(patches, "avg")


class FrozenCNNExtractor(nn.Module):
    """LDLM's extractor with its weights fixed: a backbone's feature maps (every stage, or the last),
    globally pooled (average and maximum) and z-scored with the training ROIs' mean and SD
    (buffers set by :meth:`fit_scale`, saved with the model). It stays in eval mode and passes no
    gradient, so only the formers and the head learn."""

    def __init__(self, backbone: nn.Module, item_shape: tuple[int, ...], *, stages: str = "all",
                 pooling: tuple[str, ...] = ("avg", "max")):
        super().__init__()
        self.backbone = backbone
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.stages, self.pooling = stages, list(pooling)
        with torch.no_grad():
            dim = self._pooled(torch.zeros(1, *item_shape)).shape[1]
        self.out_dim = int(dim)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.backbone.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # batch-norm statistics stay as built
        return self

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        from gastrorad.dl.features import pool_stage
        maps = self.backbone.stage_features(x) if self.stages == "all" else [("last", self.backbone.features(x))]
        return torch.cat([pool_stage(f, how, None) for _, f in maps for how in self.pooling], dim=1)

    @torch.no_grad()
    def fit_scale(self, batches) -> None:
        """Mean and SD of each pooled feature over the patches of ``batches`` (an iterable of
        (N, C, H, W) tensors: the training patients' ROIs), accumulated batch by batch."""
        n, total, squares = 0, torch.zeros_like(self.mean, dtype=torch.float64), None
        for x in batches:
            if not len(x):
                continue
            f = self._pooled(x.float()).double()
            n += len(f)
            total += f.sum(dim=0)
            squares = f.pow(2).sum(dim=0) if squares is None else squares + f.pow(2).sum(dim=0)
        if n < 2:
            return
        mean = total / n
        var = ((squares - n * mean ** 2) / (n - 1)).clamp_min(0)
        self.mean.copy_(mean.float())
        self.scale.copy_(var.sqrt().clamp_min(1e-6).float())

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        # no gradient reaches the weights (requires_grad off); Grad-CAM still flows through when its input asks
        return (self._pooled(patches) - self.mean) / self.scale
