"""Inference-time rewrites of a Res2Net that compute the same function, faster.

Three rewrites, each exact up to float32 rounding:

* BatchNorm folding: an eval-mode ``BN(conv(x))`` is ``conv'(x)`` with scaled weights and a
  bias, so every BatchNorm disappears.
* Grouped branches: in a stage block (stride 2, or any projecting block of the official
  flavour) the ``scales - 1`` 3x3 branch convs read disjoint, contiguous channel slices and
  do not depend on each other, so one grouped conv with ``scales - 1`` groups computes
  them all in a single call (Res2Net at batch 1 is bound by its chain of narrow convs).
* channels_last memory format, which oneDNN's convolutions prefer on CPU.

:func:`fuse_model` applies them to a copy; the original model is left untouched.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from res2net.models.res2net import Bottle2neck, Res2Net


@torch.no_grad()
def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv computing ``bn(conv(x))`` of the eval-mode pair, as one conv with a bias."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    )
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused.to(conv.weight.device)


def _fold_pair(parent: nn.Module, conv_name: str, bn_name: str, bn_parent: nn.Module) -> None:
    """Fold ``bn_parent.bn_name`` into ``parent.conv_name``; the BN becomes an identity."""
    conv = getattr(parent, conv_name)
    bn = getattr(bn_parent, bn_name)
    setattr(parent, conv_name, fold_bn(conv, bn))
    setattr(bn_parent, bn_name, nn.Identity())


def _fold_sequential(seq: nn.Sequential) -> None:
    """Fold every (Conv2d, BatchNorm2d) neighbour pair inside a Sequential."""
    for i in range(len(seq) - 1):
        if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
            _fold_pair(seq, str(i), str(i + 1), seq)


def _fold_block(block: Bottle2neck) -> None:
    _fold_pair(block, "conv1", "bn1", block)
    for k in range(len(block.convs)):
        _fold_pair(block.convs, str(k), str(k), block.bns)
    _fold_pair(block, "conv3", "bn3", block)
    if block.downsample is not None:
        _fold_sequential(block.downsample)


def _fold_model(model: Res2Net) -> None:
    if isinstance(model.conv1, nn.Sequential):
        _fold_sequential(model.conv1)
        last = str(len(model.conv1) - 1)
        _fold_pair(model.conv1, last, "bn1", model)
    else:
        _fold_pair(model, "conv1", "bn1", model)
    for stage in model.stages:
        for block in stage:
            _fold_block(block)


class GroupedStageBlock(nn.Module):
    """A folded stage-block Bottle2neck whose independent branches run as one grouped conv."""

    def __init__(self, block: Bottle2neck) -> None:
        super().__init__()
        convs = list(block.convs)
        first = convs[0]
        self.split = first.in_channels * len(convs)
        self.conv1 = block.conv1
        self.branches = nn.Conv2d(
            self.split,
            first.out_channels * len(convs),
            first.kernel_size,
            first.stride,
            first.padding,
            groups=first.groups * len(convs),
            bias=True,
        ).to(first.weight.device)
        with torch.no_grad():
            # Group g of a grouped conv reads input slice g and writes output slice g, so
            # stacking the branch weights along the output axis reproduces each branch.
            self.branches.weight.copy_(torch.cat([c.weight for c in convs]))
            self.branches.bias.copy_(torch.cat([c.bias for c in convs]))
        self.pool = block.pool
        self.conv3 = block.conv3
        self.downsample = block.downsample
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.conv1(x))
        branches = self.relu(self.branches(out[:, : self.split]))
        out = self.conv3(torch.cat([branches, self.pool(out[:, self.split :])], dim=1))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


def fuse_model(
    model: Res2Net, *, group_branches: bool = True, channels_last: bool = True
) -> Res2Net:
    """An eval-mode copy of ``model`` with BN folded, stage branches grouped, channels_last.

    :param model: a classifier or feature extractor; left unchanged.
    :param group_branches: replace each stage block's branch convs by one grouped conv.
    :param channels_last: store weights in channels_last (feed channels_last inputs too for
        the full benefit; :class:`res2net.deploy.runtimes.EagerRuntime` does).
    :raises TypeError: ``model`` is not a :class:`Res2Net`.
    """
    if not isinstance(model, Res2Net):
        raise TypeError(f"fuse_model expects a res2net Res2Net, got {type(model).__name__}")
    fused = copy.deepcopy(model).eval()
    _fold_model(fused)
    if group_branches:
        for stage in fused.stages:
            for i, block in enumerate(stage):
                if block.stage_block:
                    stage[i] = GroupedStageBlock(block)
    if channels_last:
        fused = fused.to(memory_format=torch.channels_last)
    fused.is_fused = True  # lets callers skip a second, impossible, fold
    return fused


def prepare_for_inference(model: nn.Module, *, channels_last: bool = True) -> nn.Module:
    """Eval-mode copy with the exact rewrites of :func:`fuse_model`: what every engine but
    ``eager`` runs and every export writes.

    Models that are not a :class:`Res2Net` (e.g. an already traced module), or already
    fused, are only put in eval mode.
    """
    if isinstance(model, Res2Net) and not getattr(model, "is_fused", False):
        return fuse_model(model, channels_last=channels_last)
    return model.eval()
