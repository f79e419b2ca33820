"""From anything a user can name to a model card and a runtime: the one door of every front end.

What a user can name (``model=`` / ``weights=`` of :class:`~res2net.deploy.predictor.Predictor`,
``--model`` / ``--weights`` on the command line):

- a registered name (``res2net models``), with a weight file, ``True`` (the published
  weights) or ``None``/``False`` (random weights, asked for explicitly);
- a ``.safetensors`` written by ``res2net train``, which carries its card;
- an exported model (``.onnx``, ``.xml`` + ``.bin``, ``.pt``, ``.pt2``, ``.pte``), whose
  ``<file>.json`` gives card, preprocessing, labels and precision: it is run as it is, in
  :func:`res2net.deploy.export.load_exported`'s runtime, with nothing converted or downloaded.

A PaddleClas inference model (its folder, ``.pdiparams`` or program) runs as the registered
network its parameters fit. Anything else where a model is expected (a bare weight file, an
OpenVINO ``.bin``, an export's ``.json``, a folder) is refused with an error that says what it
is and what reads it, never read as something else. :func:`identify` reads only metadata
(cheap: the Ray stages and the server call it for the preprocessing); :func:`open_model`
builds the runtime.

**One name per model** (:attr:`ModelSource.name`): the card's ``model`` when it has one; else,
for a training export, ``<run folder>-<file stem>`` (``run/tiny/final.safetensors`` is
``tiny-final``, the name ``res2net export`` writes into its export); else the file's stem.
The file's stem is also an alias (:attr:`ModelSource.aliases`), which the server answers to.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from res2net.card import ModelCard, card_of, load_card, training_card
from res2net.deploy.engines import FORMATS
from res2net.models.registry import REGISTRY, get_entry
from res2net.weights.errors import WeightFileError

if TYPE_CHECKING:
    from torch import nn

    from res2net.deploy.runtimes import Runtime

WEIGHT_SUFFIXES = (".pdparams", ".pth", ".safetensors")
EXPORT_SUFFIXES = tuple(FORMATS.values())


class ModelSourceError(ValueError):
    """What was named cannot be used as a model; says what it is and what reads it.

    ``cli_message`` is the same advice in the command line's flags (``--model``,
    ``--weights``), which the CLI prints instead of the library's argument names.
    """

    def __init__(self, message: str, cli_message: str | None = None) -> None:
        super().__init__(message)
        self.cli_message = cli_message or message


class NoModelError(ModelSourceError):
    """Neither a registered model name nor a file that records its own model."""


@dataclass(frozen=True)
class ModelSource:
    """What a user named, identified: ``kind`` is ``"registered"``, ``"training"`` (a
    ``res2net train`` file) or ``"export"``; ``path`` is the file for the last two;
    ``weights`` what the network is built with for ``"registered"`` (a path, ``True`` or
    ``False``)."""

    kind: str
    card: ModelCard
    name: str
    path: Path | None = None
    weights: str | bool = False
    aliases: tuple[str, ...] = ()

    def answers_to(self, name: str) -> bool:
        """Whether ``name`` is this model's name or one of its aliases."""
        return name == self.name or name in self.aliases


def is_registered(model: object) -> bool:
    """Whether ``model`` is a registered name (a path never is)."""
    return isinstance(model, str) and model in REGISTRY


def names_a_file(model: object) -> bool:
    """Whether ``model`` reads as a path rather than a name: a ``PathLike``, a string with a
    folder separator or a file suffix, or an existing file or folder."""
    if model is None or is_registered(model):
        return False
    if isinstance(model, os.PathLike):
        return True
    text = str(model)
    return os.sep in text or "/" in text or bool(Path(text).suffix) or os.path.exists(text)


def identify(model: str | os.PathLike | None, weights: Any = None) -> ModelSource:
    """What ``model`` and ``weights`` name, with its card; reads metadata, builds nothing.

    :param model: a registered name, an exported model file or a ``res2net train`` file.
    :param weights: for a registered name: a weight file, ``True`` (published) or
        ``None``/``False`` (random); without ``model``: an exported model or a
        ``res2net train`` file.
    :raises ModelSourceError: something that is not a model (saying what it is), or
        ``weights`` given with a file that carries its own.
    :raises ValueError: an unknown name (with the closest ones), or the existing errors of a
        broken export or training file (:class:`~res2net.card.ExportedModelError`,
        :class:`~res2net.weights.errors.WeightFileError`).
    """
    if model is not None and names_a_file(model):
        if weights not in (None, False):
            raise ModelSourceError(
                f"model={os.fspath(model)!r} is a file that carries its own weights; leave "
                "weights= out",
                f"--model {os.fspath(model)} carries its own weights; leave out --weights "
                "and --pretrained",
            )
        return _file_source(Path(model), "model")
    if model is None:
        if isinstance(weights, (str, os.PathLike)) and weights:
            return _file_source(Path(weights), "weights")
        raise NoModelError(
            "no model given: pass model= a registered name or an exported model, or weights= "
            "a .safetensors file written by `res2net train` (it records its architecture)",
            "no --model given: name a registered model or an exported model file, or pass "
            "--weights with a .safetensors file written by `res2net train` (it records its "
            "architecture)",
        )
    return _registered_source(str(model), weights)


def _registered_source(name: str, weights: Any) -> ModelSource:
    card = load_card(name)  # unknown names raise with the closest ones
    if isinstance(weights, (str, os.PathLike)) and Path(weights).suffix in EXPORT_SUFFIXES:
        source = _file_source(Path(weights), "weights")
        if source.card.name not in (None, "", name):
            raise ModelSourceError(
                f"weights={os.fspath(weights)!r} is an export of {source.card.name!r}, not "
                f"of model={name!r}; pass the export alone as model=",
                f"--weights {os.fspath(weights)} is an export of {source.card.name!r}, not of "
                f"--model {name}; pass the export alone as --model",
            )
        return source
    chosen: str | bool = os.fspath(weights) if isinstance(weights, os.PathLike) else weights
    return ModelSource("registered", card, card.name or name, weights=chosen or False)


def _file_source(path: Path, argument: str) -> ModelSource:
    """The source of a file named by ``argument`` (``model`` or ``weights``)."""
    if path.suffix in EXPORT_SUFFIXES:
        card = load_card(path)  # the export's metadata, checksums verified
        return ModelSource("export", card, card.name or path.stem, path, aliases=(path.stem,))
    if path.suffix == ".safetensors" and path.is_file():
        card = training_card(path)
        if card is not None:
            name = card.name or f"{path.resolve().parent.name}-{path.stem}"
            return ModelSource("training", card, name, path, aliases=(path.stem,))
    inference = _inference_model_source(path)
    if inference is not None:
        return inference
    raise _not_a_model(path, argument)


def _inference_model_source(path: Path) -> ModelSource | None:
    """A PaddleClas inference model (its folder, ``.pdiparams`` or program file) as the
    registered PaddleClas network its parameters fit, with the class count of its own
    classifier; None when ``path`` names no inference model.

    PaddleClas deploys these files with nothing else (``deploy/python/predict_cls.py`` takes
    ``Global.inference_model_dir``), so the architecture is read off the tensors' names and
    shapes (:func:`res2net.weights.io.guess_model`).
    """
    from res2net.weights.paddle_inference import find_inference_model

    if find_inference_model(path) is None:
        return None
    from res2net.builder import candidates
    from res2net.weights.io import guess_model, read_weight_file

    state, _, _ = read_weight_file(path)
    name = guess_model(state, candidates())
    if name is None:
        raise WeightFileError(
            f"{path}: a PaddleClas inference model, but not of a registered Res2Net (its "
            "parameters fit none of `res2net models`)"
        )
    # PaddleClas stores the classifier as [features, classes] (fc_weights / fc.weight).
    heads = [v for k, v in state.items() if k.startswith(("fc.", "fc_")) and v.ndim == 2]
    card = card_of(get_entry(name))
    if heads:
        card = replace(card, num_classes=int(heads[0].shape[1]))
    return ModelSource(
        "registered", card, name, path, weights=os.fspath(path), aliases=(path.stem,)
    )


def _not_a_model(path: Path, argument: str) -> ModelSourceError:
    """The error for a path that is no model: what it is, and what to do with it, once in
    the library's argument names and once in the command line's flags."""
    library = _what_it_is(path, model="model=", weights="weights=")
    cli = _what_it_is(path, model="--model", weights="--weights")
    return ModelSourceError(
        f"{argument}={os.fspath(path)!r}: {library}", f"--{argument} {path}: {cli}"
    )


def _what_it_is(path: Path, *, model: str, weights: str) -> str:
    if not path.exists():
        return (
            "no such file, and not a registered name (`res2net models` lists them); give a "
            f"registered name, an exported model ({', '.join(EXPORT_SUFFIXES)}) or a "
            ".safetensors written by `res2net train`"
        )
    if path.is_dir():
        return (
            "a folder, not a model file (a PaddleClas inference model folder holds "
            "inference.pdiparams and its program)"
        )
    if path.suffix in WEIGHT_SUFFIXES:
        return (
            "a weight file without a model card (not written by `res2net train`): it holds "
            f"tensors, not an architecture; pass it as {weights} with {model} the registered "
            "name it belongs to"
        )
    if path.suffix == ".bin":
        return f"the weights half of an OpenVINO IR; pass its {path.with_suffix('.xml').name}"
    if path.suffix == ".json":
        return f"export metadata; pass the model file beside it, {path.with_suffix('').name}"
    return (
        f"not a model file res2net reads; give a registered name, an exported model "
        f"({', '.join(EXPORT_SUFFIXES)}) or a .safetensors written by `res2net train`"
    )


# -- building: a runtime, or a network ------------------------------------------------------


def open_model(
    source: ModelSource,
    *,
    engine: str = "auto",
    device: str = "cpu",
    precision: str = "fp32",
    num_classes: int | None = None,
) -> tuple[ModelCard, Runtime]:
    """The card and a ready runtime of an identified source.

    An export runs in :func:`~res2net.deploy.export.load_exported`'s runtime (``engine``
    ``"auto"``: the format's own) at the precision it was exported at; the others are built
    (:func:`network`) and wrapped by :func:`~res2net.deploy.runtimes.create_runtime`.

    :raises ValueError: ``num_classes`` or ``precision`` that contradict an export's card.
    """
    from res2net.deploy.runtimes import create_runtime

    if source.kind == "export":
        return source.card, _open_export(source, engine, device, precision, num_classes)
    card = _sized_card(source, num_classes)
    model = network(replace(source, card=card))
    return card, create_runtime(model, engine, device=device, precision=precision)


def _open_export(
    source: ModelSource, engine: str, device: str, precision: str, num_classes: int | None
) -> Runtime:
    from res2net.deploy.export import load_exported

    card = source.card
    if num_classes not in (None, card.num_classes):
        raise ValueError(
            f"num_classes={num_classes} but {source.path} has {card.num_classes} classes; "
            "leave num_classes out for an exported model"
        )
    if precision not in ("fp32", card.precision):
        raise ValueError(
            f"precision={precision!r}, but {source.path} was exported at {card.precision} and "
            "runs at that; export it again at the precision you want"
        )
    return load_exported(source.path, None if engine == "auto" else engine, device=device)


def _sized_card(source: ModelSource, num_classes: int | None) -> ModelCard:
    if source.kind == "registered":
        return replace(source.card, num_classes=num_classes or source.card.num_classes)
    if num_classes not in (None, source.card.num_classes):
        raise ValueError(
            f"num_classes={num_classes} but {source.path} has {source.card.num_classes} "
            "classes; leave num_classes out for a `res2net train` file"
        )
    return source.card


def network(source: ModelSource) -> nn.Module:
    """The PyTorch network of a registered or training source, weights loaded, eval mode.

    :raises ModelSourceError: an export (it runs in its runtime, not rebuilt).
    """
    from res2net.builder import build_model

    if source.kind == "export":
        raise ModelSourceError(
            f"{source.path} is an exported model; it runs in its runtime "
            "(res2net.deploy.export.load_exported), it is not rebuilt as a network"
        )
    if source.kind == "training":
        check_training_export(source.path, source.card)
        return build_model(source.card).eval()
    # skip_head=False: a fine-tuned file's own classifier is what its user needs.
    return build_model(source.card, weights=source.weights, skip_head=False).eval()


def check_training_export(path: str | Path, card: ModelCard) -> None:
    """Check that a training export's architecture matches the file's tensors before a
    network is built from it (a shape-only network on the meta device). Its card's fields
    were checked when it was read (:func:`res2net.card.training_card`).

    :raises WeightFileError: naming the file and the first differing tensors.
    """
    import torch
    from safetensors import safe_open

    from res2net.models.res2net import Res2Net

    with torch.device("meta"):
        shapes = Res2Net(card.config, num_classes=card.num_classes)
    wanted = {k: tuple(v.shape) for k, v in shapes.state_dict().items()}
    with safe_open(str(path), framework="pt") as fh:
        found = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
    wanted = {k: v for k, v in wanted.items() if not k.endswith("num_batches_tracked")}
    found = {k: v for k, v in found.items() if not k.endswith("num_batches_tracked")}
    if wanted != found:
        odd = sorted(set(wanted.items()) ^ set(found.items()))[:3]
        raise WeightFileError(
            f"{path}: not a valid `res2net train` export: the architecture in its metadata "
            "does not match the tensors in the file (first differences: "
            f"{', '.join(f'{k} {s}' for k, s in odd)}). Re-export it with `res2net train`, or "
            "name the registered model it belongs to."
        )


def model_from_weights(
    weights: str | Path | None, name: str | None = None, pretrained: bool = False
) -> tuple[nn.Module, ModelCard]:
    """A network for evaluation or export, and the card that says how to feed it.

    ``name`` is a registered model; without it the architecture comes from the card that
    ``res2net train`` writes into its ``.safetensors`` (whose preprocessing and class names
    then win over the registry's). With a name, the class count is read from the file's
    classifier.
    """
    from res2net.builder import build_model

    card = training_card(weights) if weights else None
    if card is not None:
        check_training_export(weights, card)
    if name is None:
        if card is None:
            raise ValueError(
                f"{weights}: no architecture in its metadata (not written by `res2net train`); "
                "name the registered model it belongs to (argument name)"
            )
        return build_model(card).eval(), card
    num_classes = _classes_in_file(weights) if weights else 1000
    entry = replace(card_of(get_entry(name)), num_classes=num_classes)
    chosen: bool | str = str(weights) if weights else pretrained
    model = build_model(entry, weights=chosen, skip_head=False)
    return model.eval(), card or entry


def _classes_in_file(path: str | Path) -> int:
    from res2net.weights.io import read_weight_file

    state, _, _ = read_weight_file(path)
    for key in ("fc.weight", "out.weight"):
        if key in state:
            # PaddleClas stores Linear weights as [in, out]; ours are [out, in].
            return int(state[key].shape[1 if key == "out.weight" else 0])
    raise ValueError(f"{path}: no classifier weights (fc.weight / out.weight) in the file")


def load_training_export(weights: str | os.PathLike) -> tuple[nn.Module, Any, str, list | None]:
    """Network (weights loaded, eval mode), preprocessing, name (:attr:`ModelSource.name`)
    and class names of a ``.safetensors`` file written by ``res2net train``.

    :raises ModelSourceError: ``weights`` is not such a file, saying what it is.
    """
    source = identify(None, weights)
    if source.kind != "training":
        raise ModelSourceError(
            f"weights={os.fspath(weights)!r} is an exported model, not a `res2net train` file",
            f"--weights {os.fspath(weights)} is an exported model, not a `res2net train` file",
        )
    labels = list(source.card.labels) if source.card.labels is not None else None
    return network(source), source.card.preprocess, source.name, labels
