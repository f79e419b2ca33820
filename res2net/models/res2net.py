"""One parametric Res2Net: depth, width, scales, plain or "vd" stem/shortcut, two flavours.

Architecture facts follow Gao et al., "Res2Net: A New Multi-scale Backbone Architecture"
(TPAMI 2019) and PaddleClas's ``res2net.py`` / ``res2net_vd.py``. Module names follow
timm's key layout (``conv1``, ``bn1``, ``layerN.i.convs.k`` ...), so a timm / original
release state dict loads without renaming; PaddleClas names are mapped in
:mod:`res2net.weights.paddle`.

Two flavours compute different functions from the same parameters:

``paddle``
    What PaddleClas computes. Only stride-2 blocks split their branches independently;
    the stride-1 projecting block of stage 1 chains its branches and passes the last
    chunk through. The 3x3 average pool of stride-2 blocks excludes padding.
``official``
    What the original release, timm and mmpretrain compute. Every projecting block is a
    "stage" block (independent branches, last chunk through a 3x3 average pool with the
    block's stride), and the pool counts padding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

# The configuration is torch-free (listing models needs no torch); re-exported from here.
from res2net.models.config import DEPTHS, Flavour, Res2NetConfig  # noqa: F401

STAGE_CHANNELS = (256, 512, 1024, 2048)


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
    """A bias-free conv with 'same'-style padding and its BatchNorm (eps 1e-5)."""
    conv = nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
    return conv, nn.BatchNorm2d(cout)


class Bottle2neck(nn.Module):
    """The Res2Net bottleneck: 1x1 -> hierarchical 3x3 branches -> 1x1, plus shortcut.

    :param inplanes: input channels.
    :param branch_width: channels of one branch (the block's inner width / ``scales``).
    :param outplanes: output channels (4x the stage's base planes).
    :param stride: 1, or 2 on the first block of stages 2-4.
    :param downsample: the projecting shortcut, or ``None`` for identity.
    :param stage_block: branches independent and last chunk pooled (see module docstring).
    :param pool_counts_padding: whether the 3x3 pool of a stage block averages over padding.
    """

    def __init__(
        self,
        inplanes: int,
        branch_width: int,
        outplanes: int,
        *,
        scales: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        stage_block: bool = False,
        pool_counts_padding: bool = False,
        cardinality: int = 1,
    ) -> None:
        super().__init__()
        inner = branch_width * scales
        self.scales = scales
        self.branch_width = branch_width
        self.stage_block = stage_block
        self.conv1, self.bn1 = _conv_bn(inplanes, inner, 1)
        pairs = [
            _conv_bn(branch_width, branch_width, 3, stride, cardinality) for _ in range(scales - 1)
        ]
        self.convs = nn.ModuleList(conv for conv, _ in pairs)
        self.bns = nn.ModuleList(bn for _, bn in pairs)
        if stage_block:
            self.pool = nn.AvgPool2d(3, stride, 1, count_include_pad=pool_counts_padding)
        self.conv3, self.bn3 = _conv_bn(inner, outplanes, 1)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        chunks = torch.split(out, self.branch_width, dim=1)
        branches: list[Tensor] = []
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            inp = chunks[i] if i == 0 or self.stage_block else chunks[i] + branches[-1]
            branches.append(self.relu(bn(conv(inp))))
        branches.append(self.pool(chunks[-1]) if self.stage_block else chunks[-1])
        out = self.bn3(self.conv3(torch.cat(branches, dim=1)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


def _downsample(cin: int, cout: int, stride: int, avg_down: bool) -> nn.Sequential:
    """Projecting shortcut: strided 1x1 conv, or (vd) 2x2 average pool + stride-1 1x1 conv."""
    conv, bn = _conv_bn(cin, cout, 1, 1 if avg_down else stride)
    if avg_down and stride > 1:
        # Padding is excluded from the average, as Paddle's exclusive pooling does.
        pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
        return nn.Sequential(pool, conv, bn)
    if avg_down:
        return nn.Sequential(nn.Identity(), conv, bn)
    return nn.Sequential(conv, bn)


class Res2Net(nn.Module):
    """A Res2Net classifier or multi-scale feature extractor.

    :param config: the architecture, see :class:`Res2NetConfig`.
    :param num_classes: classifier outputs; 0 builds no head (``forward`` returns pooled
        2048-d features).
    :param features_only: ``forward`` returns the stage outputs listed in ``out_indices``
        (strides 4, 8, 16, 32) instead of logits, for detection / segmentation necks.
    :param out_indices: which stages (0-3) to return in feature mode.
    :param frozen_stages: stem and the first ``frozen_stages`` stages get
        ``requires_grad=False`` and their BatchNorms stay in eval mode (-1 freezes nothing).
    """

    def __init__(
        self,
        config: Res2NetConfig,
        num_classes: int = 1000,
        *,
        features_only: bool = False,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        frozen_stages: int = -1,
    ) -> None:
        super().__init__()
        self.config = config
        self.features_only = features_only
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        if config.deep_stem:
            self.conv1 = nn.Sequential(
                *_conv_bn(3, 32, 3, 2), nn.ReLU(inplace=True),
                *_conv_bn(32, 32, 3), nn.ReLU(inplace=True),
                nn.Conv2d(32, 64, 3, 1, 1, bias=False),
            )  # fmt: skip
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)

        inplanes = 64
        official = config.flavour == "official"
        for stage, (blocks, outplanes) in enumerate(
            zip(DEPTHS[config.depth], STAGE_CHANNELS, strict=True)
        ):
            branch_width = config.width * (2**stage) * config.cardinality
            layer = []
            for i in range(blocks):
                stride = 2 if i == 0 and stage > 0 else 1
                downsample = (
                    _downsample(inplanes, outplanes, stride, config.avg_down) if i == 0 else None
                )
                stage_block = stride == 2 or (official and downsample is not None)
                layer.append(
                    Bottle2neck(
                        inplanes, branch_width, outplanes,
                        scales=config.scales, stride=stride, downsample=downsample,
                        stage_block=stage_block, pool_counts_padding=official,
                        cardinality=config.cardinality,
                    )
                )  # fmt: skip
                inplanes = outplanes
            self.add_module(f"layer{stage + 1}", nn.Sequential(*layer))

        self.num_features = inplanes
        self.num_classes = num_classes
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes) if num_classes > 0 else nn.Identity()
        if features_only:
            del self.fc
        self._init_weights()
        self._freeze()

    @property
    def stages(self) -> list[nn.Sequential]:
        """The four residual stages, in order."""
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def _init_weights(self) -> None:
        # Kaiming normal (fan_out) for convs, as torchvision / timm; BN to identity.
        if next(self.parameters()).is_meta:
            # A shape-only network (the meta device) has no values to set, and drawing them
            # there runs torch's reference kernels, whose first use imports torch._dynamo:
            # seconds of start-up for every file checked before it is loaded.
            return
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.conv1, self.bn1, *self.stages[: self.frozen_stages]]

    def _freeze(self) -> None:
        for module in self._frozen_modules():
            for param in module.parameters():
                param.requires_grad_(False)

    def train(self, mode: bool = True) -> Res2Net:
        """Set train mode, keeping BatchNorms of frozen stages in eval mode."""
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        return self

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """Stem and the four stages; returns every stage's output (strides 4 to 32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs

    def forward_head(self, x: Tensor) -> Tensor:
        """Global average pool, flatten and classifier (identity when ``num_classes=0``)."""
        return self.fc(torch.flatten(self.global_pool(x), 1))

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        """Logits (N x num_classes), or in feature mode the selected stage outputs."""
        feats = self.forward_features(x)
        if self.features_only:
            return [feats[i] for i in self.out_indices]
        return self.forward_head(feats[-1])
