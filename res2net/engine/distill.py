"""SSLD-style knowledge distillation: losses on soft outputs and the frozen teacher.

PaddleClas's SSLD (Simple Semi-supervised Label Distillation) trains a student on a frozen,
stronger teacher's soft outputs over ImageNet-1k plus unlabeled images, with a Jensen-Shannon
divergence, or a symmetric KL ("DML", deep mutual learning, Zhang et al., 2018): PaddleClas's
``docs/en/advanced_tutorials/knowledge_distillation_en.md``. Both are computed here from
logits; labels are not needed, so unlabeled images can join the data.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _log_probs(logits: Tensor, temperature: float) -> Tensor:
    return F.log_softmax(logits.float() / temperature, dim=1)


def kl_divergence(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) per sample, from log-probabilities (N x C) -> N."""
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def js_divergence(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0
) -> Tensor:
    """Mean Jensen-Shannon divergence between the two softmax distributions.

    JS(p, q) = (KL(p || m) + KL(q || m)) / 2 with m = (p + q) / 2; symmetric, bounded by
    ln 2, and finite even where one distribution is near zero.
    """
    log_p = _log_probs(student_logits, temperature)
    log_q = _log_probs(teacher_logits, temperature)
    # log m = log((p + q) / 2), computed stably in log space.
    log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - math.log(2.0)
    return 0.5 * (kl_divergence(log_p, log_m) + kl_divergence(log_q, log_m)).mean()


def symmetric_kl(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0
) -> Tensor:
    """Mean symmetric KL divergence, KL(p || q) + KL(q || p), halved (PaddleClas's DML loss)."""
    log_p = _log_probs(student_logits, temperature)
    log_q = _log_probs(teacher_logits, temperature)
    return 0.5 * (kl_divergence(log_p, log_q) + kl_divergence(log_q, log_p)).mean()


DISTILL_LOSSES = {"js": js_divergence, "dml": symmetric_kl}


def distill_loss(
    name: str, student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0
) -> Tensor:
    """The distillation loss ``name`` (``"js"`` or ``"dml"``); the teacher gets no gradient."""
    try:
        fn = DISTILL_LOSSES[name]
    except KeyError:
        raise ValueError(
            f"unknown distillation loss {name!r}; use one of {list(DISTILL_LOSSES)}"
        ) from None
    return fn(student_logits, teacher_logits.detach(), temperature)


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode for good and no gradients: a teacher's BatchNorm statistics never move."""
    model.eval()
    model.train = lambda mode=True: model  # type: ignore[method-assign]
    for param in model.parameters():
        param.requires_grad_(False)
    return model


@torch.no_grad()
def agreement(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Number of samples where student and teacher pick the same class (a 0-d tensor)."""
    return (student_logits.argmax(1) == teacher_logits.argmax(1)).sum()
