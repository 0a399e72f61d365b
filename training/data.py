"""Training DataLoader: epoch-seeded sharded sampling, worker set-up, optional skipping of bad images."""

from __future__ import annotations

import torch
from torch.utils.data import default_collate

from config import Config
from datasets.base import PoseDataset
from datasets.sampler import EpochSampler
from runtime.distributed import DistInfo
from runtime.system import WorkerLoader, single_threaded_opencv, worker_init
from utils.errors import UserInputError


class SkipBadImages(torch.utils.data.Dataset):
    """Wraps a dataset so an unreadable image yields None (counted by the collate) instead of an error."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        try:
            return self.dataset[key]
        except UserInputError:
            return None


def collate_skipping(samples: list) -> dict:
    """Default collate over the readable samples, with ``skipped`` = how many were dropped.

    A batch whose every image was unreadable is just ``{"skipped": n}`` (no "image"), so the count survives.
    """
    good = [s for s in samples if s is not None]
    if not good:
        return {"skipped": len(samples)}
    batch = default_collate(good)
    batch["skipped"] = len(samples) - len(good)
    return batch


def make_train_loader(dataset: PoseDataset, cfg: Config, dist_info: DistInfo, spec,
                      pin_memory: bool = False) -> tuple[WorkerLoader, EpochSampler]:
    """Shuffled loader whose sampler yields (index, epoch): augmentation depends only on seed, epoch, index.

    ``pin_memory`` only for a CUDA model. Workers start with each epoch and end with it (not persistent), so
    a finished or interrupted run leaves no worker processes to be shut down by hand."""
    # --max_train_samples N: the sampler draws from the first N samples only
    size = len(dataset) if spec.max_train_samples is None else min(spec.max_train_samples, len(dataset))
    data = SkipBadImages(dataset) if spec.skip_bad_images else dataset
    sampler = EpochSampler(size, shuffle=True, seed=cfg.seed, rank=dist_info.rank,
                           world_size=dist_info.world_size, drop_last=True)
    workers = cfg.workers
    if workers > 0:
        single_threaded_opencv()
    loader = WorkerLoader(
        data, batch_size=cfg.batch_size, sampler=sampler, num_workers=workers, drop_last=True,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers > 0 else None, worker_init_fn=worker_init if workers > 0 else None,
        collate_fn=collate_skipping if spec.skip_bad_images else None,
    )
    return loader, sampler
