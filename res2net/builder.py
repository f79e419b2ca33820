"""From a name or a model card to a network with weights (the place of timm's ``_builder``).

This module sits above the registry (:mod:`res2net.models.registry`, data), the network
(:mod:`res2net.models.res2net`) and the weight files (:mod:`res2net.weights.hub` fetches,
:mod:`res2net.weights.io` reads into a given network). A name is resolved to its card once,
at the top of each function here; below that, the card travels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from res2net.card import ModelCard, card_of, load_card
from res2net.models.registry import REGISTRY, get_entry
from res2net.weights import hub

if TYPE_CHECKING:
    from res2net.models.res2net import Res2Net
    from res2net.weights.io import Candidate, LoadReport


def candidates() -> list[Candidate]:
    """The registry's architectures, as :func:`res2net.weights.io.guess_model` takes them."""
    return [(e.name, e.config, e.family) for e in REGISTRY.values()]


def create_model(
    name: str,
    pretrained: bool | str = False,
    num_classes: int = 1000,
    *,
    features_only: bool = False,
    out_indices: tuple[int, ...] = (0, 1, 2, 3),
    frozen_stages: int = -1,
    skip_head: bool | None = None,
    cache_dir: str | None = None,
) -> Res2Net:
    """Build a registered Res2Net, optionally with weights.

    :param name: a name from :func:`~res2net.models.registry.list_models`, e.g.
        ``"Res2Net50_vd_26w_4s"``.
    :param pretrained: ``False`` (random init), ``True`` (the entry's published weights,
        downloaded and cached), or a path to a ``.pdparams`` / ``.safetensors`` / ``.pth`` file.
    :param num_classes: classifier outputs. With a 1000-class weight file and another
        ``num_classes``, the backbone is loaded and the head left fresh (fine-tuning).
    :param features_only: return multi-scale stage outputs instead of logits.
    :param out_indices: stages returned in feature mode.
    :param frozen_stages: freeze the stem and this many stages (-1: none).
    :param skip_head: load weights without the classifier; default: only when
        ``num_classes != 1000`` or ``features_only``.
    :param cache_dir: weight cache folder for ``pretrained=True``.
    :returns: the model, in eval mode when weights were loaded.
    """
    return build_model(
        card_of(get_entry(name)),
        weights=pretrained if pretrained is not None else False,
        num_classes=num_classes,
        features_only=features_only,
        out_indices=out_indices,
        frozen_stages=frozen_stages,
        skip_head=skip_head,
        cache_dir=cache_dir,
    )


def build_model(
    card: ModelCard,
    weights: bool | str | os.PathLike | None = None,
    *,
    num_classes: int | None = None,
    features_only: bool = False,
    out_indices: tuple[int, ...] = (0, 1, 2, 3),
    frozen_stages: int = -1,
    skip_head: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Res2Net:
    """The network a card describes, with weights.

    :param weights: ``None``: the card's own local file if it has one (a training export's
        card), else random initialization; ``False``: random; ``True``: the card's published
        weights (downloaded and cached); or a weight file path.
    :param num_classes: default: the card's.
    :param skip_head: load weights without the classifier; default: only when the class
        count differs from the card's or ``features_only``.
    The other parameters are :func:`create_model`'s.
    :raises ValueError: a card without an architecture (an export of another network).
    """
    from res2net.models.res2net import Res2Net

    if card.config is None:
        raise ValueError(f"card of {card.name!r} has no architecture (arch); nothing to build")
    num_classes = card.num_classes if num_classes is None else num_classes
    model = Res2Net(
        card.config,
        num_classes=num_classes,
        features_only=features_only,
        out_indices=out_indices,
        frozen_stages=frozen_stages,
    )
    if weights is None:
        weights = card.weights.path or False
    if weights is False:
        return model
    if skip_head is None:
        skip_head = features_only or num_classes != card.num_classes
    path = fetch_card_weights(card, cache_dir) if weights is True else weights
    load_weights(model, path, skip_head=skip_head)
    return model.eval()


def load_weights(model: Res2Net, path: str | os.PathLike, *, skip_head: bool = False) -> LoadReport:
    """:func:`res2net.weights.io.load_weights`, naming the registered architecture a
    mismatching file looks like."""
    from res2net.weights import io

    return io.load_weights(model, path, skip_head=skip_head, candidates=candidates())


def fetch_card_weights(
    card: ModelCard, cache_dir: str | os.PathLike | None = None, progress: bool = True
) -> Path:
    """The published weights of the registered model ``card`` names, as a verified file in
    the cache (:func:`res2net.weights.hub.fetch_weights`).

    Only the registry says where published weights come from and what their hash is: a
    card read from a file (an export, a training header) may name a registered model, but
    its own ``weights`` never choose a URL, a hash or a cache file.
    """
    entry = REGISTRY.get(card.name) if card.name is not None else None
    if entry is None or not entry.url:
        raise hub.WeightDownloadError(
            f"{card.name or 'this model'} has no published weights in the registry; load a "
            f"file with weights='path/to/weights' (create_model(name, pretrained='path'))"
        )
    registered = card_of(entry)

    def check(raw: Path) -> None:
        from res2net.models.res2net import Res2Net

        load_weights(Res2Net(registered.config), raw)

    return hub.fetch_weights(entry.name, registered.weights, check, cache_dir, progress)


def fetch_weights(
    name: str, cache_dir: str | os.PathLike | None = None, progress: bool = True
) -> Path:
    """The published weights of a registered ``name`` as a verified ``.safetensors`` file in
    the cache; see :func:`res2net.weights.hub.fetch_weights` for the checks and errors."""
    return fetch_card_weights(card_of(get_entry(name)), cache_dir, progress)


def download_filename(name: str) -> str:
    """File name of ``name``'s download in the cache (and on a mirror): ``NAME.<format>``."""
    card = card_of(get_entry(name))
    return hub.download_filename(card.name, card.weights)


def weight_url(name: str) -> str:
    """Where ``name``'s weights are fetched from (the registry URL, or the mirror's)."""
    card = card_of(get_entry(name))
    return hub.weight_url(card.name, card.weights) if card.weights.url else ""


def cached_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The downloaded weight file of ``name`` if it is in the cache (not re-hashed), else
    None."""
    card = card_of(get_entry(name))
    return hub.cached_path(card.name, card.weights, cache_dir)


def pin_status(name: str, cache_dir: str | os.PathLike | None = None) -> str:
    """How ``name``'s published weights are verified (:func:`res2net.weights.hub.pin_status`):
    ``pinned``, ``recorded``, ``trust on first use`` or ``-``."""
    card = card_of(get_entry(name))
    return hub.pin_status(card.name, card.weights, cache_dir)


def convert_weights(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    model_name: str | None,
    *,
    naming: str = "res2net",
) -> Path:
    """Convert a weight file for ``model_name`` to ``.safetensors`` (or, for a ``dst``
    ending in ``.pdparams``, to PaddleClas's format), checking it loads.

    :param model_name: the registered name; ``None`` for a ``res2net train`` export, whose
        own card (architecture, class count) is used.
    :param naming: ``"res2net"`` (ours, = timm's keys) or ``"timm"`` (identical keys; the
        metadata says so) for the output file.
    :raises ValueError: ``naming="timm"`` for a PaddleClas-flavour model.
    """
    _check_destination(Path(dst))
    card = card_of(get_entry(model_name)) if model_name is not None else load_card(src)
    if naming == "timm" and card.config.flavour != "official":
        # timm computes the official flavour: these weights would load but compute wrongly.
        raise ValueError(
            f"naming='timm' needs an official-flavour model; {card.name} is PaddleClas's "
            "flavour, which timm's networks do not compute (see README, 'Two flavours')"
        )
    return _convert_for_card(src, dst, card, naming)


def _check_destination(dst: Path) -> None:
    """Refuse, before any reading, a ``dst`` that cannot be written as a file."""
    if dst.is_dir():
        raise ValueError(
            f"dst={str(dst)!r} is a folder; name the file to write in it, e.g. "
            f"{dst / 'model.safetensors'}"
        )
    for folder in dst.parents:
        if folder.exists():
            if not folder.is_dir():
                raise ValueError(f"dst={str(dst)!r}: {folder} is a file, not a folder")
            return


def _convert_for_card(src, dst, card: ModelCard, naming: str = "res2net") -> Path:
    from res2net.models.res2net import Res2Net
    from res2net.weights import io

    model = Res2Net(card.config, num_classes=card.num_classes)
    return io.convert_weights(src, dst, model, card.name, naming=naming, candidates=candidates())
