"""The registry: every named Res2Net, its architecture, weights and published numbers.

Variants are data: a :class:`ModelEntry` names a :class:`Res2NetConfig`, where its weights
live, how its inputs are preprocessed, and what accuracy its publisher reports. This is the
single source of truth for those facts; everything else reads them from here, as a model
card (:func:`res2net.card.load_card`). This module is data: building a model with weights is
:mod:`res2net.builder`'s job.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from res2net.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from res2net.models.config import Res2NetConfig
from res2net.models.counting import count_model

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ModelEntry", "Preprocess", "Published", "REGISTRY"]

PADDLE_URL = "https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/{}_pretrained.pdparams"
TIMM_URL = "https://huggingface.co/timm/{}.in1k/resolve/main/model.safetensors"


@dataclass(frozen=True)
class Published:
    """Figures as the weights' publisher states them (accuracy as fractions, 0-1)."""

    top1: float | None = None
    top5: float | None = None
    gflops: float | None = None
    params_m: float | None = None
    source: str = ""


@dataclass(frozen=True)
class ModelEntry:
    """One registered name: architecture + weights + preprocessing + published figures."""

    name: str
    config: Res2NetConfig
    family: Literal["paddleclas", "official"]
    url: str = ""
    # SHA-256 of the file at ``url``, pinned from a real download. None: none was ever made
    # from this project, so the cache trusts the first download and records its hash
    # (``res2net models --wide`` says which; see res2net.weights.hub).
    sha256: str | None = None
    preprocess: Preprocess = field(default_factory=Preprocess)
    published: Published = field(default_factory=Published)
    notes: str = ""

    @property
    def weight_format(self) -> str:
        """File format at ``url``: ``pdparams``, ``safetensors`` or ``pth``."""
        return self.url.rsplit(".", 1)[-1] if self.url else ""


_PADDLE_TABLE = "PaddleClas docs/en/models/ImageNet1k/Res2Net.md"
_TIMM_TABLE = "timm results-imagenet.csv"


def _paddle(name: str, config: Res2NetConfig, pub: Published, weights: str = "") -> ModelEntry:
    url = PADDLE_URL.format(weights or name)
    return ModelEntry(name, config, "paddleclas", url=url, published=pub)


def _official(name: str, config: Res2NetConfig, top1: float | None, notes: str = "") -> ModelEntry:
    config = replace(config, flavour="official")
    return ModelEntry(
        name,
        config,
        "official",
        url=TIMM_URL.format(name),
        # timm's cfg: crop_pct 0.875 (resize 256, crop 224), bilinear, ImageNet mean/std.
        preprocess=Preprocess(resize_short=256, crop=224, interpolation="bilinear", style="timm"),
        published=Published(top1=top1, source=_TIMM_TABLE),
        notes=notes,
    )


_V1B = "the original release's 'v1b' weights (deep stem + avg-pool shortcut, PaddleClas's 'vd')"


_R50_26W4S = Res2NetConfig(50, 26, 4)
_R50_14W8S = Res2NetConfig(50, 14, 8)
_VD = {"deep_stem": True, "avg_down": True}
_R50_VD = Res2NetConfig(50, 26, 4, **_VD)
_R101_VD = Res2NetConfig(101, 26, 4, **_VD)
_R200_VD = Res2NetConfig(200, 26, 4, **_VD)


def _pub(top1: float, top5: float, gflops: float, params_m: float) -> Published:
    return Published(top1, top5, gflops, params_m, _PADDLE_TABLE)


_ENTRIES: list[ModelEntry] = [
    # PaddleClas's table, names exactly as written there.
    _paddle("Res2Net50_26w_4s", _R50_26W4S, _pub(0.793, 0.946, 8.52, 25.70)),
    _paddle("Res2Net50_vd_26w_4s", _R50_VD, _pub(0.798, 0.949, 8.37, 25.06)),
    _paddle("Res2Net50_vd_26w_4s_ssld", _R50_VD, _pub(0.831, 0.966, 8.37, 25.06)),
    _paddle("Res2Net50_14w_8s", _R50_14W8S, _pub(0.795, 0.947, 9.01, 25.72)),
    _paddle("Res2Net101_vd_26w_4s", _R101_VD, _pub(0.806, 0.952, 16.67, 45.22)),
    _paddle("Res2Net101_vd_26w_4s_ssld", _R101_VD, _pub(0.839, 0.971, 16.67, 45.22)),
    _paddle("Res2Net200_vd_26w_4s", _R200_VD, _pub(0.812, 0.957, 31.49, 76.21)),
    _paddle("Res2Net200_vd_26w_4s_ssld", _R200_VD, _pub(0.851, 0.974, 31.49, 76.21)),
    # The original release's variants, as timm registers them (official flavour).
    _official("res2net50_26w_4s", _R50_26W4S, 0.7799),
    _official("res2net50_48w_2s", Res2NetConfig(50, 48, 2), None),
    _official("res2net50_14w_8s", _R50_14W8S, 0.7814),
    _official("res2net50_26w_6s", Res2NetConfig(50, 26, 6), None),
    _official("res2net50_26w_8s", Res2NetConfig(50, 26, 8), None),
    _official("res2net101_26w_4s", Res2NetConfig(101, 26, 4), 0.7919),
    _official("res2next50", Res2NetConfig(50, 4, 4, cardinality=8), None),
    _official("res2net50d", _R50_VD, 0.8028, _V1B),
    _official("res2net101d", _R101_VD, 0.8124, _V1B),
]
REGISTRY: dict[str, ModelEntry] = {entry.name: entry for entry in _ENTRIES}


def list_models(family: str | None = None) -> list[str]:
    """Registered model names, PaddleClas's first, optionally only one ``family``.

    :param family: ``"paddleclas"``, ``"official"`` or ``None`` for all.
    """
    return [e.name for e in _ENTRIES if family is None or e.family == family]


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; an unknown name raises with the closest matches."""
    try:
        return REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, REGISTRY, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown model {name!r}.{hint} `res2net models` lists all {len(REGISTRY)} names."
        ) from None


def model_info(name: str) -> dict[str, Any]:
    """Facts about a registered model: counted params/GFLOPs, published figures, weights.

    Keys: ``name``, ``family``, ``flavour``, ``architecture`` (depth/width/scales/...),
    ``params`` (exact trainable count, 1000 classes), ``gflops`` (counted, 224x224),
    ``published`` (top1/top5/gflops/params_m/source), ``mismatch`` (published fields that
    differ from the counted values by more than 1.5%), ``url``, ``weight_format``,
    ``preprocess``.
    """
    entry = get_entry(name)
    params, gflops = count_model(entry.config)
    pub = entry.published
    mismatch = []
    if pub.gflops is not None and abs(pub.gflops - gflops) > 0.015 * gflops:
        mismatch.append("gflops")
    if pub.params_m is not None and abs(pub.params_m * 1e6 - params) > 0.015 * params:
        mismatch.append("params_m")
    return {
        "name": entry.name,
        "family": entry.family,
        "flavour": entry.config.flavour,
        "architecture": {k: v for k, v in asdict(entry.config).items() if k != "flavour"},
        "params": params,
        "gflops": round(gflops, 3),
        "published": asdict(pub),
        "mismatch": mismatch,
        "url": entry.url,
        "sha256": entry.sha256,
        "weight_format": entry.weight_format,
        "preprocess": entry.preprocess.to_dict(),
        "notes": entry.notes,
    }
