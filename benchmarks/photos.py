"""The benchmarks' varied JPEG photos, made from the test photos (tests/data/images).

One generator for every script that times real decoding: random crops of the six photos,
scaled to a random long side, as users' files vary. Seeded, so a script sees the same files
in every run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

TEST_IMAGES = Path(__file__).resolve().parents[1] / "tests" / "data" / "images"
PHOTOS = sorted(TEST_IMAGES.glob("*.[pj][np]g"))


def random_crops(
    count: int, seed: int = 0, keep: tuple[float, float] = (0.5, 1.0),
    long_side: tuple[int, int] = (320, 1600),
) -> Iterator[Image.Image]:  # fmt: skip
    """``count`` RGB crops, cycling through the test photos: each keeps a random ``keep``
    fraction of the width and of the height, then is resized (bicubic) to a random long side
    in ``long_side`` pixels."""
    rng = np.random.default_rng(seed)
    photos = [Image.open(p).convert("RGB") for p in PHOTOS]
    for i in range(count):
        photo = photos[i % len(photos)]
        w, h = photo.size
        cw, ch = int(w * rng.uniform(*keep)), int(h * rng.uniform(*keep))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = photo.crop((left, top, left + cw, top + ch))
        scale = rng.uniform(*long_side) / max(cw, ch)
        yield crop.resize((max(1, round(cw * scale)), max(1, round(ch * scale))), Image.BICUBIC)
