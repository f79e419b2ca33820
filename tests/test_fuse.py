"""The inference rewrites compute the same function as the unfused network.

Weights come from the real PaddleClas network with randomized BatchNorm (the
``paddle_reference`` fixture), so the BN statistics are far from identity and folding them
is actually exercised; a second case covers the official flavour's stride-1 stage block.
"""

from __future__ import annotations

import pytest
import torch

from res2net.builder import create_model
from res2net.deploy.fuse import GroupedStageBlock, fold_bn, fuse_model

NAME = "Res2Net50_vd_26w_4s"


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    """Relative error within 1e-4 of max|logit|, and the same top-5 on every image."""
    scale = float(b.abs().max())
    assert float((a - b).abs().max()) <= 1e-4 * scale
    assert torch.equal(a.topk(5).indices, b.topk(5).indices)


def test_fold_bn_matches_conv_then_bn():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 16, 3, 2, 1, bias=False)
    bn = torch.nn.BatchNorm2d(16)
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.2, 3.0)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.normal_()
    bn.eval()
    x = torch.randn(2, 8, 17, 17)
    with torch.no_grad():
        assert torch.allclose(fold_bn(conv, bn)(x), bn(conv(x)), atol=1e-5, rtol=1e-5)


def test_fused_paddle_model_matches_unfused_and_paddleclas(paddle_reference, photo_batch):
    weights, paddle_logits = paddle_reference(NAME)
    model = create_model(NAME, pretrained=str(weights))
    fused = fuse_model(model)
    grouped = [m for m in fused.modules() if isinstance(m, GroupedStageBlock)]
    assert len(grouped) == 3  # the stride-2 first blocks of stages 2-4
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = photo_batch[0][:2]
    with torch.inference_mode():
        ref = model(x)
        out = fused(x.contiguous(memory_format=torch.channels_last))
    _close(out, ref)
    _close(out, torch.from_numpy(paddle_logits[:2]))
    # The original model is left as it was.
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("name", ["res2net50_26w_4s", "res2next50"])
def test_fused_official_flavour_matches(name, photo_batch):
    """Stride-1 stage blocks (official flavour) and grouped 3x3 branches (Res2NeXt)."""
    torch.manual_seed(1)
    model = create_model(name)
    x = photo_batch[0][:2]
    # Fit BN statistics to the photos, then random affine parameters, so the outputs depend
    # on the image and the folded biases are far from zero (random init alone gives almost
    # image-independent outputs).
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.momentum = 1.0
    with torch.no_grad():
        model.train()(x)
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.3)
    model.eval()
    fused = fuse_model(model)
    assert sum(isinstance(m, GroupedStageBlock) for m in fused.modules()) == 4
    with torch.inference_mode():
        ref, out = model(x), fused(x)
    assert float(ref.std(0).mean()) > 1e-3 * float(ref.abs().max())  # image-dependent
    _close(out, ref)


def test_fuse_rejects_other_modules():
    with pytest.raises(TypeError, match="Res2Net"):
        fuse_model(torch.nn.Linear(2, 2))
