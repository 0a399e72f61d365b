"""Every refusal of a run, before anything in its directory is moved or written (``preflight``), and the check
that every DDP rank can read a file before any rank loads it.

Cheapest first: the epochs left to a resumed or continued run and its compatibility with this one (a
continuation's: training/continuation.py), who may write into the run directory (training/rundir.py), a
--pretrained G of the same architecture, an epoch with at least one step, and every image file the run will
read. Each refusal is one line naming the flag or file.
"""

from __future__ import annotations

import os

import torch
from tqdm import tqdm

from checkpoint import LOADED_FROM, check_training_checkpoint, net_args_of
from config import Config
from datasets import check_image_files
from datasets.base import PoseDataset
from runtime.distributed import DistInfo, failing_ranks
from training.continuation import check_continuation
from training.rundir import check_run_dir
from training.spec import RunSpec
from utils.errors import UserInputError


def preflight(cfg: Config, spec: RunSpec, world_size: int, resumed: dict | None, pretrained: dict | None,
              net_args: dict, generator_state: dict, train_set: PoseDataset, val_set: PoseDataset,
              continued: dict | None = None) -> str:
    """Check the run (module doc): ``resumed`` the --resume checkpoint, ``pretrained`` the --pretrained one,
    ``continued`` the --continue_from one, ``net_args`` and ``generator_state`` those of the networks built for
    this run. Returns what the run may do with its directory (``training.rundir.check_run_dir``)."""
    if resumed is not None:
        check_epochs_left(resumed, cfg.epochs)
        check_resume_compatible(resumed, cfg.method, spec.dataset, net_args)
    if continued is not None:
        check_epochs_left(continued, cfg.epochs)
        check_continuation(continued, cfg, spec, world_size, net_args)
    layout = check_run_dir(spec.run_dir, resumed, spec.overwrite)
    if pretrained is not None:
        check_pretrained(pretrained, generator_state)
    check_epoch_has_steps(len(train_set), cfg.batch_size, world_size, spec)
    bad = check_image_files(train_set, spec.max_train_samples, "--train_split", allow=spec.skip_bad_images)
    if bad:
        tqdm.write(f"note: {bad} train images cannot be read; --skip_bad_images skips them")
    check_image_files(val_set, spec.max_val_samples, "--val_split")
    return layout


def check_epochs_left(ckpt: dict, epochs: int) -> None:
    """Refuse to resume a run that has done its ``epochs`` already."""
    done = ckpt.get("state", {}).get("epoch", 0)
    if done >= epochs:
        raise UserInputError(f"--epochs: {ckpt[LOADED_FROM]} has already trained {done} of epochs={epochs}; pass "
                             f"--epochs N with N > {done} to train further")


def check_resume_compatible(ckpt: dict, method: str, dataset: str, net_args: dict) -> None:
    """One-line error when the checkpoint cannot continue as this run: no training state, another format, or
    another method, dataset or architecture."""
    path = ckpt[LOADED_FROM]
    check_training_checkpoint(ckpt, f"--resume {path}", "resume",
                              " (README, Resume); start a run from its weights with --pretrained, or resume it "
                              "with the version that wrote it")
    if ckpt["method"] != method:
        article = "an" if str(ckpt["method"])[:1] in "aeiou" else "a"
        raise UserInputError(f"--resume {path}: checkpoint is from {article} {ckpt['method']} run, not {method}")
    if ckpt["dataset"] != dataset:
        raise UserInputError(f"--resume {path}: checkpoint was trained on '{ckpt['dataset']}', not '{dataset}' "
                             f"(drop --dataset to continue on '{ckpt['dataset']}')")
    saved = net_args_of(ckpt)
    for name in sorted(set(net_args) | set(saved)):
        if saved.get(name) != net_args.get(name):
            raise UserInputError(f"--resume {path}: {name} architecture {saved.get(name)} "
                                 f"differs from this run's {net_args.get(name)}")


def check_pretrained(ckpt: dict, own: dict[str, torch.Tensor]) -> None:
    """Refuse a --pretrained G of another architecture than this run's (state dict ``own``): only the occlusion
    modules may be missing (a single-task G starting a multi-task one), nothing may differ in shape."""
    path, state = ckpt[LOADED_FROM], ckpt["generator"]
    mismatch = [k for k in state if k in own and state[k].shape != own[k].shape]
    if mismatch or any(k not in own for k in state if "occlusion" not in k):
        raise UserInputError(f"--pretrained {path}: architecture differs from this run's generator "
                             f"(checkpoint {ckpt['model_args']})")
    missing = [k for k in own if k not in state]
    if any("occlusion" not in k for k in missing):
        raise UserInputError(f"--pretrained {path}: checkpoint lacks generator weights {missing[:3]}")


def check_epoch_has_steps(train_size: int, batch_size: int, world_size: int, spec: RunSpec) -> None:
    """Refuse a run whose epochs would have no step: each process drops its last partial batch, so it needs
    at least ``batch_size`` of the (``--max_train_samples``-limited) train samples."""
    size = train_size if spec.max_train_samples is None else min(spec.max_train_samples, train_size)
    if size // world_size // batch_size == 0:
        limited = f", --max_train_samples {spec.max_train_samples}" if size < train_size else ""
        shared = f" shared by {world_size} processes" if world_size > 1 else ""
        raise UserInputError(f"--batch_size: {batch_size} is larger than the train set ({size} samples of "
                             f"{spec.dataset} '{spec.train_split}'{limited}{shared}): an epoch would have no step; "
                             f"lower --batch_size or train on more samples")


def check_readable_on_every_rank(flag: str, path: str, dist: DistInfo) -> None:
    """Under DDP every rank reads --resume and --pretrained itself (no broadcast from rank 0): before any rank
    loads one, all agree that each can read it, or all stop with one line naming the ranks that cannot."""
    if not dist.distributed:
        return  # one process: loading reports a missing file itself
    bad = failing_ranks((os.path.isfile(path) or os.path.isdir(path)) and os.access(path, os.R_OK))
    if bad:
        raise UserInputError(f"{flag} {path}: cannot be read on {', '.join(bad)}; every rank reads it itself, "
                             f"so it must be on a filesystem that every node mounts at the same path")
