"""What a training step minimises: label cross-entropy on soft targets, batch mixing
(Mixup, CutMix), and, with a teacher, the distillation loss of :mod:`res2net.engine.distill`.

Labels become one-hot soft targets with a mask: unlabeled images (label -1, distillation
only) have a zero mask, so the label loss ignores them while the distillation loss sees them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from res2net.engine.config import AugmentConfig, Config
from res2net.engine.distill import distill_loss


def soft_targets(labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """One-hot targets (all zero for unlabeled rows, label -1) and the labelled-row mask."""
    mask = (labels >= 0).float()
    return F.one_hot(labels.clamp(min=0), num_classes).float() * mask[:, None], mask


def mix_batch(
    images: Tensor, targets: Tensor, mask: Tensor, augment: AugmentConfig
) -> tuple[Tensor, Tensor, Tensor]:
    """Mixup (Zhang et al., 2018) or CutMix (Yun et al., 2019) on a batch with soft targets.

    Each batch is mixed with a shuffled copy of itself, with a weight drawn from
    Beta(alpha, alpha); PaddleClas's Res2Net recipes use Mixup with alpha 0.2
    (``ppcls/configs/ImageNet/Res2Net/*.yaml``, ``MixupOperator: alpha: 0.2``). A mixed row is
    labelled only when both of its sources are.
    """
    a = augment
    use_cutmix = a.cutmix > 0 and (a.mixup <= 0 or torch.rand(()).item() < a.cutmix_prob)
    alpha = a.cutmix if use_cutmix else a.mixup
    if alpha <= 0:
        return images, targets, mask
    lam = torch.distributions.Beta(alpha, alpha).sample().item()
    perm = torch.randperm(images.shape[0]).to(images.device)
    if use_cutmix:
        h, w = images.shape[2:]
        cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = torch.randint(h, ()).item(), torch.randint(w, ()).item()
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
        images = images.clone()
        images[:, :, y0:y1, x0:x1] = images[perm, :, y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the area actually pasted
    else:
        images = lam * images + (1 - lam) * images[perm]
    return images, lam * targets + (1 - lam) * targets[perm], mask * mask[perm]


def hard_loss(logits: Tensor, targets: Tensor, mask: Tensor, smoothing: float) -> Tensor:
    """Cross-entropy with label smoothing on (possibly mixed) soft targets, over labelled rows."""
    per_image = F.cross_entropy(
        logits.float(), targets, label_smoothing=smoothing, reduction="none"
    )
    return (per_image * mask).sum() / mask.sum().clamp(min=1)


def training_loss(
    cfg: Config, logits: Tensor, targets: Tensor, mask: Tensor, teacher_logits: Tensor | None
) -> Tensor:
    """The loss of one batch: the label loss, or with a teacher the distillation loss plus
    ``distill.hard_weight`` times the label loss."""
    smoothing = cfg.loss.label_smoothing
    if teacher_logits is None:
        return hard_loss(logits, targets, mask, smoothing)
    d = cfg.distill
    loss = distill_loss(d.loss, logits, teacher_logits, d.temperature)
    if d.hard_weight:
        loss = loss + d.hard_weight * hard_loss(logits, targets, mask, smoothing)
    return loss
