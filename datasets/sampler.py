"""Epoch-aware sampler: yields ``(index, epoch)`` so each sample's augmentation depends only on
(seed, epoch, index), never on worker count, worker persistence or where a run was resumed."""

from __future__ import annotations

from collections.abc import Iterator

import torch


class EpochSampler(torch.utils.data.Sampler):
    """Shuffled (or ordered) indices for one epoch, sharded across ``world_size`` ranks.

    Every rank draws the same permutation from (seed, epoch) and takes every ``world_size``-th
    element; with ``drop_last`` False the permutation is padded by wrapping so ranks get equal counts.
    """

    def __init__(
        self, size: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False
    ):
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 0
        self.start = 0  # skip this many of this rank's samples (mid-epoch resume)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the permutation of ``epoch``; ``start`` skips samples already consumed on resume."""
        self.epoch, self.start = epoch, start

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        if self.drop_last:
            order = order[: self.size - self.size % self.world_size]
        elif self.size % self.world_size:
            order += order[: self.world_size - self.size % self.world_size]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(i, self.epoch) for i in self._indices()[self.start :]])

    def __len__(self) -> int:
        return len(self._indices()) - self.start
