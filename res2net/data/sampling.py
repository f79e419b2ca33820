"""The order training reads its data in, and the seed of every sample's augmentation.

Both are functions of the run's seed and the epoch alone, so a run resumed mid-epoch reads the
same batches as an uninterrupted one, and the same sample gets the same random crop and flip
whichever process or data-loader worker decodes it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


class ResumableSampler(Sampler[int]):
    """Each epoch's order is a permutation seeded by ``seed + epoch``; rank ``r`` of ``w``
    takes every ``w``-th index from ``r``. ``set_epoch(e, skip)`` drops the first ``skip``
    indices of this rank's share: that is how a resumed run continues mid-epoch exactly.

    Training pads the order to a multiple of ``w`` (every rank runs the same number of
    steps); evaluation does not (each image counted once). With ``seeded`` it yields
    ``(index, sample_seed)`` pairs for :class:`SeededSamples`: the seed is a function of
    (``seed``, epoch, index) alone.
    """

    def __init__(
        self,
        size: int,
        *,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world: int = 1,
        pad: bool = True,
        seeded: bool = False,
    ) -> None:
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world, self.pad, self.seeded = rank, world, pad, seeded
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Read epoch ``epoch``'s order next, leaving out this rank's first ``skip`` indices."""
        self.epoch, self.skip = epoch, skip

    def _indices(self) -> list[int]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=gen).tolist()
        else:
            order = list(range(self.size))
        if self.pad and self.size % self.world:
            order += order[: self.world - self.size % self.world]
        return order[self.rank :: self.world]

    def __iter__(self) -> Iterator:
        indices = self._indices()[self.skip :]
        if not self.seeded:
            return iter(indices)
        return iter((i, sample_seed(self.seed, self.epoch, i)) for i in indices)

    def __len__(self) -> int:
        return len(self._indices()) - self.skip


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's augmentation in one epoch (64 bits, well mixed)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0])


class SeededSamples(Dataset):
    """``dataset[index]`` with torch's generator seeded by the sampler's ``sample_seed``.

    A sample's random crop and flip then depend on (seed, epoch, index) alone: not on
    which worker process decodes it, how many workers there are, how many samples that
    worker decoded before, the number of training processes, or whether the run was
    resumed mid-epoch. The caller's generator state is left as it was.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]
