"""What decides a Res2Net's shape and function, as plain data (no torch import).

Architecture facts follow Gao et al., "Res2Net: A New Multi-scale Backbone Architecture"
(TPAMI 2019) and PaddleClas's ``res2net.py`` / ``res2net_vd.py``; the flavours are described
in :mod:`res2net.models.res2net`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Flavour = Literal["paddle", "official"]

DEPTHS: dict[int, tuple[int, int, int, int]] = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 12, 48, 3),
}


@dataclass(frozen=True)
class Res2NetConfig:
    """Everything that decides a Res2Net's shape and function.

    :param depth: 50, 101, 152 or 200 (blocks per stage from :data:`DEPTHS`).
    :param width: channels of one scale branch in stage 1 (26 in ``26w_4s``).
    :param scales: number of chunks the 1x1 output is split into (4 in ``26w_4s``).
    :param deep_stem: three 3x3 convs (32, 32, 64) instead of one 7x7 (the "vd" / "d" stem).
    :param avg_down: projecting shortcuts of stages 2-4 average-pool 2x2 then use a stride-1
        1x1 conv (the "vd" / "d" shortcut).
    :param flavour: ``"paddle"`` or ``"official"``, see the module docstring.
    :param cardinality: groups of each 3x3 branch conv (8 for Res2NeXt, else 1).
    """

    depth: int = 50
    width: int = 26
    scales: int = 4
    deep_stem: bool = False
    avg_down: bool = False
    flavour: Flavour = "paddle"
    cardinality: int = 1

    def __post_init__(self) -> None:
        if self.depth not in DEPTHS:
            raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {self.depth}")
        if self.scales < 2:
            raise ValueError(f"scales must be at least 2, got {self.scales}")
        if self.flavour not in ("paddle", "official"):
            raise ValueError(f"flavour must be 'paddle' or 'official', got {self.flavour!r}")
