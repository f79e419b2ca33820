"""The network family: sizes, FLOPs, registry, feature mode, and parity with PaddleClas."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import timm
import torch
from conftest import PADDLE_NETWORKS

import res2net
from res2net.models.res2net import Res2Net
from res2net.weights.paddle import paddle_names, read_pdparams

# Trainable parameters at 1000 classes, counted on PaddleClas 2.6's networks (paddle) and on
# timm's equivalents alike; PaddleClas's Res2Net.md rounds them to 25.70M, 25.06M, ...
EXACT_PARAMS = {
    "Res2Net50_26w_4s": 25_699_120,
    "Res2Net50_14w_8s": 25_059_816,
    "Res2Net50_vd_26w_4s": 25_718_352,
    "Res2Net101_vd_26w_4s": 45_225_920,
    "Res2Net200_vd_26w_4s": 76_215_536,
}
PADDLE_KEYS = {
    "Res2Net50_26w_4s": 427,
    "Res2Net50_14w_8s": 747,
    "Res2Net50_vd_26w_4s": 437,
    "Res2Net101_vd_26w_4s": 862,
    "Res2Net200_vd_26w_4s": 1687,
}
# Published GFLOPs (PaddleClas's model-zoo table), except the two rows that table swaps;
# those, and all the others, are also checked with an independent counter (fvcore).
PUBLISHED_GFLOPS = {
    "Res2Net50_26w_4s": 8.52,
    "Res2Net101_vd_26w_4s": 16.67,
    "Res2Net200_vd_26w_4s": 31.49,
}
# The same architecture in timm (the official flavour: the same convolutions).
TIMM_SAME_CONVS = {
    "Res2Net50_26w_4s": "res2net50_26w_4s",
    "Res2Net50_vd_26w_4s": "res2net50d",
    "Res2Net50_14w_8s": "res2net50_14w_8s",
    "Res2Net101_vd_26w_4s": "res2net101d",
}
TABLE_NAMES = [
    "Res2Net50_26w_4s",
    "Res2Net50_vd_26w_4s",
    "Res2Net50_vd_26w_4s_ssld",
    "Res2Net50_14w_8s",
    "Res2Net101_vd_26w_4s",
    "Res2Net101_vd_26w_4s_ssld",
    "Res2Net200_vd_26w_4s",
    "Res2Net200_vd_26w_4s_ssld",
]


@pytest.mark.parametrize("name", list(EXACT_PARAMS))
def test_exact_parameter_count(name):
    assert res2net.model_info(name)["params"] == EXACT_PARAMS[name]
    model = res2net.create_model(name)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == EXACT_PARAMS[name]


@pytest.mark.parametrize("name", list(PUBLISHED_GFLOPS))
def test_gflops_match_table(name):
    assert res2net.model_info(name)["gflops"] == pytest.approx(PUBLISHED_GFLOPS[name], rel=0.01)


def _fvcore_gflops(model: torch.nn.Module) -> float:
    """2 x the multiply-accumulates of convolutions and linear layers, as fvcore counts them
    (it traces the network; its own per-operator handlers, not torch.utils.flop_counter)."""
    from fvcore.nn import FlopCountAnalysis

    count = FlopCountAnalysis(model.eval(), torch.zeros(1, 3, 224, 224))
    count.unsupported_ops_warnings(False)
    count.uncalled_modules_warnings(False)
    by_op = count.by_operator()
    return 2 * (by_op["conv"] + by_op["linear"]) / 1e9


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n.startswith(("Res2Net101", "Res2Net200")) else n
        for n in PADDLE_NETWORKS
    ],
)
def test_gflops_match_an_independent_counter(name):
    """Our counted GFLOPs (torch.utils.flop_counter on our network) against fvcore's count of
    our network and of timm's network of the same architecture."""
    ours = res2net.model_info(name)["gflops"]
    assert _fvcore_gflops(res2net.create_model(name)) == pytest.approx(ours, rel=2e-3)
    if name in TIMM_SAME_CONVS:
        timm_model = timm.create_model(TIMM_SAME_CONVS[name], pretrained=False)
        assert _fvcore_gflops(timm_model) == pytest.approx(ours, rel=2e-3)


def test_swapped_rows_are_marked():
    flagged = {n for n in TABLE_NAMES if res2net.model_info(n)["mismatch"]}
    assert flagged == {"Res2Net50_vd_26w_4s", "Res2Net50_vd_26w_4s_ssld", "Res2Net50_14w_8s"}


@pytest.mark.parametrize("name", list(PADDLE_KEYS))
def test_paddle_name_count(name):
    with torch.device("meta"):
        model = res2net.create_model(name)
    assert len(paddle_names(model)) == PADDLE_KEYS[name]


def test_registry_names_and_ssld():
    names = res2net.list_models()
    assert names[: len(TABLE_NAMES)] == TABLE_NAMES
    for name in TABLE_NAMES:
        info = res2net.model_info(name)
        assert info["url"].endswith(f"/{name}_pretrained.pdparams")
        assert info["published"]["top1"] is not None
    base, ssld = (
        res2net.get_entry("Res2Net50_vd_26w_4s"),
        res2net.get_entry("Res2Net50_vd_26w_4s_ssld"),
    )
    assert base.config == ssld.config and base.url != ssld.url


def test_unknown_name_suggests():
    with pytest.raises(ValueError, match="Did you mean Res2Net50_vd_26w_4s"):
        res2net.create_model("Res2Net50_vd_26w_4")


def test_forward_shapes_and_feature_mode():
    model = res2net.create_model("Res2Net50_vd_26w_4s", num_classes=7).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert model(x).shape == (2, 7)
    feats = res2net.create_model("Res2Net50_vd_26w_4s", features_only=True, out_indices=(1, 3))
    with torch.no_grad():
        outs = feats.eval()(x)
    assert [tuple(o.shape) for o in outs] == [(2, 512, 28, 28), (2, 2048, 7, 7)]
    assert not hasattr(feats, "fc")


@pytest.mark.parametrize("name", ["Res2Net50_vd_26w_4s", "res2net50_26w_4s"])
def test_feature_mode_returns_the_full_models_stage_activations(name, photo_batch):
    """Feature mode's outputs are the activations that forward hooks capture on the stages
    of the full classifier with the same weights, on real photos."""
    full = res2net.create_model(name).eval()
    feats = res2net.create_model(name, features_only=True, out_indices=(0, 2, 3)).eval()
    missing, unexpected = feats.load_state_dict(full.state_dict(), strict=False)
    assert not missing and set(unexpected) == {"fc.weight", "fc.bias"}
    captured = {}
    for i, stage in enumerate(full.stages):
        stage.register_forward_hook(lambda _m, _in, out, i=i: captured.__setitem__(i, out))
    x = photo_batch[0][:3]
    with torch.no_grad():
        logits = full(x)
        outs = feats(x)
    assert logits.shape == (3, 1000) and sorted(captured) == [0, 1, 2, 3]
    assert len(outs) == 3
    for out, i in zip(outs, (0, 2, 3), strict=True):
        torch.testing.assert_close(out, captured[i], rtol=0, atol=0)
    # The stage outputs differ between photos: the comparison could fail.
    assert (outs[-1][0] - outs[-1][1]).abs().max() > 1e-3


def test_frozen_stages_stay_frozen_in_train_mode():
    model = res2net.create_model("Res2Net50_26w_4s", frozen_stages=2).train()
    assert not any(p.requires_grad for p in model.layer2.parameters())
    assert all(p.requires_grad for p in model.layer3.parameters())
    assert not model.layer1[0].bn1.training and model.layer3[0].bn1.training


@pytest.mark.parametrize("name", PADDLE_NETWORKS)
def test_parity_with_paddleclas(name, paddle_reference, photo_batch):
    """PaddleClas's own network, randomized, saved by paddle.save: our logits equal its."""
    pdparams, ref = paddle_reference(name)
    keys = set(read_pdparams(pdparams))
    model = res2net.create_model(name, pretrained=str(pdparams))
    assert keys == set(paddle_names(model).values())
    with torch.no_grad():
        ours = model(photo_batch[0]).numpy()
    scale = np.abs(ref).max()
    # The check can fail: logits differ across the photos by far more than the tolerance.
    assert np.abs(ref - ref.mean(0)).max() > 0.1 * scale
    assert np.abs(ours - ref).max() <= 1e-4 * scale
    np.testing.assert_array_equal(np.argsort(-ours, 1)[:, :5], np.argsort(-ref, 1)[:, :5])


@pytest.mark.parametrize("name", ["Res2Net50_26w_4s", "Res2Net50_vd_26w_4s"])
def test_official_flavour_differs_on_same_weights(name, paddle_reference, photo_batch):
    """Negative control: the timm / original-release flavour is a different function."""
    pdparams, ref = paddle_reference(name)
    paddle_model = res2net.create_model(name, pretrained=str(pdparams))
    official = Res2Net(replace(paddle_model.config, flavour="official")).eval()
    official.load_state_dict(paddle_model.state_dict())
    with torch.no_grad():
        theirs = official(photo_batch[0]).numpy()
    assert np.abs(theirs - ref).max() > 0.05 * np.abs(ref).max()
