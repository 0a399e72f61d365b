"""Training DataLoader: epoch-seeded sharded sampling, worker set-up and count, compact samples, optional
skipping of bad images."""

from __future__ import annotations

import os

import torch
from torch.utils.data import default_collate

from config import Config
from datasets.base import PoseDataset
from datasets.sampler import EpochSampler
from runtime.distributed import DistInfo
from runtime.system import WorkerLoader, single_threaded_opencv, worker_init
from utils.errors import UserInputError

# per rank: 8 direct-path workers make ~2,600 samples/s at this project's VM's per-worker rate, above the
# ~2,100 images/s an H100 trains config.newell8 at 35% of its peak (docs/performance.md)
MAX_WORKERS = 8


def default_workers(cores: int, local_ranks: int, cuda: bool) -> int:
    """DataLoader workers per rank when the config leaves it to the machine (``workers=-1``).

    With GPUs, the cores are shared by this node's ranks and one per rank stays with the rank's own process
    (the step's host work, the collate hand-over): ``min(8, cores // ranks - 1)``, at least 1. On a CPU-only
    run the training step itself needs the cores and the pipeline is 10-100x faster than the step
    (docs/performance.md), so one worker, and none where a rank has 2 cores or fewer: on this project's 2-core
    machine a worker made training no faster (docs/performance.md, "Worker count")."""
    share = cores // max(local_ranks, 1)
    if not cuda:
        return 0 if share <= 2 else 1
    return max(1, min(MAX_WORKERS, share - 1))


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask: taskset, a container's cpuset), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity call (macOS)
        return os.cpu_count() or 1


def resolve_workers(requested: int, device: torch.device) -> int:
    """``requested`` (the config's ``workers``), or ``default_workers`` for this machine when it is -1; the
    ranks of this node come from torchrun's LOCAL_WORLD_SIZE."""
    if requested >= 0:
        return requested
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return default_workers(usable_cores(), ranks, device.type == "cuda")


class CompactSamples(torch.utils.data.Dataset):
    """A dataset's ``compact_sample``s: uint8 crops and joints through the loader, targets drawn by the step
    on its device (``datasets.base.expand_batch``, called by ``training.steps.to_device``)."""

    def __init__(self, dataset: PoseDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        return self.dataset.compact_sample(key)


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


def make_train_loader(dataset: PoseDataset, cfg: Config, dist_info: DistInfo, spec, device: torch.device
                      ) -> tuple[WorkerLoader, EpochSampler]:
    """Shuffled loader whose sampler yields (index, epoch): augmentation depends only on seed, epoch, index.

    ``cfg.workers`` per rank (-1: ``default_workers`` for this machine). Workers persist across epochs
    (started once, not re-forked per epoch); they are daemonic children of the trainer and end with it.
    For a CUDA ``device`` memory is pinned and, with ``cfg.device_targets``, the samples are compact
    (``CompactSamples``). On the CPU the workers keep normalising and drawing: there the expansion would run
    on the cores the training step needs, and torch's float ops cost 1.3-4x the workers' table look-up."""
    # --max_train_samples N: the sampler draws from the first N samples only
    size = len(dataset) if spec.max_train_samples is None else min(spec.max_train_samples, len(dataset))
    data = CompactSamples(dataset) if cfg.device_targets and device.type == "cuda" else dataset
    data = SkipBadImages(data) if spec.skip_bad_images else data
    sampler = EpochSampler(size, shuffle=True, seed=cfg.seed, rank=dist_info.rank,
                           world_size=dist_info.world_size, drop_last=True)
    workers = resolve_workers(cfg.workers, device)
    if workers > 0:
        single_threaded_opencv()
    loader = WorkerLoader(
        data, batch_size=cfg.batch_size, sampler=sampler, num_workers=workers, drop_last=True,
        pin_memory=device.type == "cuda", persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None, worker_init_fn=worker_init if workers > 0 else None,
        collate_fn=collate_skipping if spec.skip_bad_images else None,
    )
    return loader, sampler
