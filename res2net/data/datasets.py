"""Image datasets: ImageFolder layouts, PaddleClas list files, unlabeled folders.

A dataset is a list of ``(path, label)`` samples plus a transform. A file that cannot be
decoded is either skipped (its sample becomes ``None``, dropped by :func:`collate_skipping`,
which counts it) or fails the run naming the file, as ``on_corrupt`` says.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from res2net.data.images import IMAGE_SUFFIXES, ImageDecodeError, load_image

UNLABELED = -1


class CorruptImageError(RuntimeError):
    """An image file could not be decoded and the dataset is set to fail on it."""


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def folder_samples(
    root: str | Path, num_classes: int | None = None
) -> tuple[list[tuple[Path, int]], list[str]]:
    """Samples of an ImageFolder layout: ``root/<class>/**/<image>``; classes sorted by name.

    :param num_classes: the classifier's size; more class folders than this are refused.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} not found")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"{root}: no class sub-folders (expected root/<class>/<image>)")
    if num_classes is not None and len(classes) > num_classes:
        raise ValueError(
            f"{root}: {len(classes)} class folders but the model has {num_classes} classes "
            f"(last folder: {classes[-1]!r}); raise model.num_classes or remove folders"
        )
    samples = [
        (path, label)
        for label, name in enumerate(classes)
        for path in sorted((root / name).rglob("*"))
        if _is_image(path)
    ]
    if not samples:
        raise ValueError(f"{root}: no images with suffixes {', '.join(sorted(IMAGE_SUFFIXES))}")
    return samples, classes


def list_file_samples(
    list_file: str | Path, root: str | Path, num_classes: int | None = None
) -> list[tuple[Path, int]]:
    """Samples of a PaddleClas list file: ``relative/path label`` per line, under ``root``.

    :param num_classes: labels must be ``0 .. num_classes - 1``; others are refused with
        the file and line (negative labels always are).
    """
    list_file, root = Path(list_file), Path(root)
    if not list_file.is_file():
        raise FileNotFoundError(f"list file {list_file} not found")
    samples = []
    for lineno, line in enumerate(list_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isascii():
            parts = []
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(
                f"{list_file}:{lineno}: expected 'relative/path label', got {line.strip()[:200]!r}"
            )
        label = int(parts[1])
        if label < 0 or (num_classes is not None and label >= num_classes):
            limit = f"0 to {num_classes - 1}" if num_classes is not None else "0 or more"
            raise ValueError(
                f"{list_file}:{lineno}: label {label} is out of range (must be {limit}); "
                "fix the list file or model.num_classes"
            )
        samples.append((root / parts[0], label))
    if not samples:
        raise ValueError(f"{list_file}: no samples")
    return samples


def unlabeled_samples(dirs: list[str | Path]) -> list[tuple[Path, int]]:
    """Every image under each folder (any depth), labelled :data:`UNLABELED`."""
    samples = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise FileNotFoundError(f"unlabeled image folder {d} not found")
        samples += [(p, UNLABELED) for p in sorted(d.rglob("*")) if _is_image(p)]
    return samples


class ImageDataset(Dataset):
    """Decode ``samples[i]`` as RGB and apply ``transform``; corrupt files per ``on_corrupt``."""

    def __init__(
        self,
        samples: list[tuple[Path, int]],
        transform: Callable[[Image.Image], torch.Tensor],
        on_corrupt: str = "skip",
        classes: list[str] | None = None,
    ) -> None:
        if on_corrupt not in ("skip", "fail"):
            raise ValueError(f"on_corrupt must be 'skip' or 'fail', got {on_corrupt!r}")
        self.samples = samples
        self.transform = transform
        self.on_corrupt = on_corrupt
        self.classes = classes

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        path, label = self.samples[index]
        try:
            return self.transform(load_image(path)), label
        except Exception as exc:  # noqa: BLE001 - one bad image (even a MemoryError) is its own
            reason = (
                str(exc) if isinstance(exc, ImageDecodeError) else f"{type(exc).__name__}: {exc}"
            )
            if self.on_corrupt == "fail":
                raise CorruptImageError(
                    f"{path}: cannot decode image ({reason}); fix or remove it, or set "
                    "data.on_corrupt=skip"
                ) from exc
            warnings.warn(f"skipping corrupt image {path}: {reason}", stacklevel=2)
            return None


def collate_skipping(batch: list[Any]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Stack a batch, dropping samples that failed to decode; returns ``(x, y, n_skipped)``."""
    good = [b for b in batch if b is not None]
    skipped = len(batch) - len(good)
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), skipped
    images = torch.stack([b[0] for b in good])
    labels = torch.tensor([b[1] for b in good], dtype=torch.long)
    return images, labels, skipped


def build_dataset(
    root: str | Path,
    transform: Callable,
    list_file: str | Path | None = None,
    on_corrupt: str = "skip",
    num_classes: int | None = None,
) -> ImageDataset:
    """An :class:`ImageDataset` from a folder, or a PaddleClas list file relative to it.

    :param num_classes: the classifier's size: labels outside it are refused here, naming
        the list file and line (or the folder), not at the first batch.
    """
    if list_file:
        samples = list_file_samples(list_file, root, num_classes)
        return ImageDataset(samples, transform, on_corrupt)
    samples, classes = folder_samples(root, num_classes)
    return ImageDataset(samples, transform, on_corrupt, classes)


def train_transform(
    image_size: int,
    *,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    crop_ratio: tuple[float, float] = (0.75, 4.0 / 3.0),
    hflip: bool = True,
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
    std: tuple[float, float, float] = (0.229, 0.224, 0.225),
) -> Callable[[Image.Image], torch.Tensor]:
    """PaddleClas's ImageNet train augmentation with torchvision.

    Random resized crop (bilinear; scale 0.08-1, ratio 3/4-4/3 by default) and an optional
    horizontal flip, then x/255 and per-channel normalization: PaddleClas's ``RandCropImage``,
    ``RandFlipImage`` and ``NormalizeImage`` in ``ppcls/configs/ImageNet/Res2Net/*.yaml``.
    Its randomness comes from torch's global generator; the trainer seeds that generator for
    each sample (:class:`res2net.data.sampling.SeededSamples`).
    """
    from torchvision import transforms as T

    steps = [T.RandomResizedCrop(image_size, scale=crop_scale, ratio=crop_ratio)]
    if hflip:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(list(mean), list(std))]
    return T.Compose(steps)


def render_digits(
    out_dir: str | Path, *, size: int = 32, val_fraction: float = 0.2, seed: int = 0
) -> dict[str, int]:
    """Write scikit-learn's handwritten digits (1797 8x8 scans, shipped with the package, no
    download) as an ImageFolder: ``out_dir/{train,val}/<digit>/<index>.png`` plus
    ``labels.txt`` (class names, one per line).

    The split is stratified and fixed by ``seed``; images are upscaled bilinearly to
    ``size`` x ``size`` grayscale PNGs. Returns the number of images per split.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # The scans are 0..16 ink levels: dark digits on white, like a photo of handwriting.
    pixels = (255 - digits.images * (255.0 / 16.0)).round().astype("uint8")
    indices = list(range(len(pixels)))
    train_idx, val_idx = train_test_split(
        indices, test_size=val_fraction, random_state=seed, stratify=digits.target
    )
    out = Path(out_dir)
    for split, chosen in (("train", train_idx), ("val", val_idx)):
        for i in chosen:
            folder = out / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(pixels[i], mode="L").resize((size, size), Image.BILINEAR)
            image.save(folder / f"{i:04d}.png")
    (out / "labels.txt").write_text("".join(f"{n}\n" for n in range(10)))
    return {"train": len(train_idx), "val": len(val_idx)}
