"""Losses: binary cross-entropy (optionally label-smoothed), Cox partial likelihood
(torchsurv), their sum, and the knowledge-distillation loss of Progressive Distill.

A binary model outputs one logit z; its two-class form is softmax([0, z]) =
(1 - sigmoid(z), sigmoid(z)), which is how the two-class formulas of seed 003 apply.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def smoothed_targets(y: torch.Tensor, beta: float, k: int = 2) -> torch.Tensor:
    """Seed 003, Eq. 3: q_i = 1 - beta for the true class, beta / (K - 1) otherwise. (B, K)."""
    onehot = F.one_hot(y.long(), k).float()
    return onehot * (1 - beta) + (1 - onehot) * beta / (k - 1)


def two_class_logits(z: torch.Tensor) -> torch.Tensor:
    """(B,) or (B, 1) binary logits -> (B, 2) class logits [0, z]."""
    z = z.reshape(-1)
    return torch.stack([torch.zeros_like(z), z], dim=1)


def bce_loss(logit: torch.Tensor, y: torch.Tensor, *, label_smoothing: float = 0.0,
             pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy with targets smoothed as Eq. 3 (for K = 2: y -> y(1 - b) + (1 - y) b)."""
    y = y.float().reshape(-1)
    target = y * (1 - label_smoothing) + (1 - y) * label_smoothing
    return F.binary_cross_entropy_with_logits(logit.reshape(-1), target, pos_weight=pos_weight)


def cox_loss(risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    """Negative Cox partial log-likelihood (torchsurv, Efron ties), mean over events."""
    from torchsurv.loss.cox import neg_partial_log_likelihood
    event = event.bool().reshape(-1)
    if not event.any() or event.numel() < 2:
        # no event, or one patient (a last batch of one: its own risk set, a partial likelihood of 1; torchsurv
        # refuses it): no information, keep the graph
        return risk.sum() * 0.0
    return neg_partial_log_likelihood(risk.reshape(-1, 1), event, time.reshape(-1).float(), ties_method="efron",
                                      reduction="mean")


def kd_loss(student_logit: torch.Tensor, teacher_logit: torch.Tensor, y: torch.Tensor, *, alpha: float,
            temperature: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """Seed 003, Eq. 1: alpha CE_ls(y, softmax(z)) + T^2 (1 - alpha) KL(softmax(r/T) || softmax(z/T)).

    z: student logits, r: teacher logits (binary logits, used in their two-class form),
    CE_ls: cross-entropy with Eq. 3's smoothed targets.
    """
    zs, zt = two_class_logits(student_logit), two_class_logits(teacher_logit).detach()
    q = smoothed_targets(y, label_smoothing)
    hard = -(q * F.log_softmax(zs, dim=1)).sum(dim=1).mean()
    T = temperature
    soft = F.kl_div(F.log_softmax(zs / T, dim=1), F.softmax(zt / T, dim=1), reduction="batchmean")
    return alpha * hard + T * T * (1 - alpha) * soft
