"""Class names: ImageNet-1k's from torchvision, or a user's label file."""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib.util
import os
from pathlib import Path

from res2net.data.files import InputFileError, read_regular_file

# ImageNet-21k's 21,843 names take about 0.5 MB; a label file 32 times that is not one.
MAX_LABEL_FILE_BYTES = 16 << 20


@functools.cache
def _imagenet_labels() -> tuple[str, ...]:
    # torchvision ships the 1000 names with every ImageNet weight enum, from one list in
    # torchvision/models/_meta.py. That list is read as data: importing torchvision costs
    # seconds of start-up (torchvision.ops imports torch._dynamo) for 1000 strings.
    spec = importlib.util.find_spec("torchvision")
    if spec is not None and spec.origin is not None:
        source = Path(spec.origin).parent / "models" / "_meta.py"
        with contextlib.suppress(OSError, SyntaxError, ValueError):
            for node in ast.parse(source.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.Assign) and any(
                    getattr(t, "id", None) == "_IMAGENET_CATEGORIES" for t in node.targets
                ):
                    return tuple(ast.literal_eval(node.value))
    from torchvision.models import ResNet50_Weights  # a torchvision laid out otherwise

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, index = class id (from torchvision's metadata)."""
    return list(_imagenet_labels())


def load_label_file(path: str | os.PathLike) -> list[str]:
    """Class names from a text file: one name per line, or PaddleClas's ``id name`` lines.

    The ``id name`` form (``ppcls/utils/imagenet1k_label_list.txt``) is recognised when every
    line starts with an integer followed by a space; the ids must then be 0..N-1, each once.

    :raises ValueError: missing/empty file, not a regular file, over
        :data:`MAX_LABEL_FILE_BYTES`, not UTF-8 text, or ids that are repeated or leave gaps.
    """
    path = Path(path)
    try:
        text = read_regular_file(path, MAX_LABEL_FILE_BYTES).decode("utf-8")
    except InputFileError as exc:
        raise ValueError(f"label file {exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"label file {path}: not UTF-8 text ({exc.reason})") from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)]
    lines = [(n, line) for n, line in lines if line]
    if not lines:
        raise ValueError(f"label file {path}: no labels in it; write one class name per line")
    pairs = [(n, line.split(maxsplit=1)) for n, line in lines]
    if not all(len(p) == 2 and p[0].isdigit() for _, p in pairs):
        return [line for _, line in lines]
    names: dict[int, str] = {}
    for number, (ident, name) in pairs:
        if int(ident) in names:
            raise ValueError(f"label file {path}, line {number}: class id {ident} repeated")
        names[int(ident)] = name
    missing = sorted(set(range(len(names))) - set(names))
    if missing:
        raise ValueError(
            f"label file {path}: class ids must be 0..{len(names) - 1}; missing {missing[:5]}"
        )
    return [names[i] for i in range(len(names))]
