"""Crash-safe training checkpoints: what they hold, how they are written, how a run resumes from one.

A checkpoint holds tensors and plain Python values only (it loads with ``torch.load(weights_only=True)``,
see ``inference.weights``): networks, optimisers, schedulers, AMP scalers, RNG states, position in the
epoch, partial epoch statistics, the resolved config and the data description.

Random generators under DDP: every rank's Python, NumPy and torch states are gathered into ``rng_ranks``
(rank order; ``rng`` keeps rank 0's for older readers). On resume rank r restores entry r when the
checkpoint has one, so a run resumed on as many ranks continues every rank's streams exactly; a rank the
checkpoint has no entry for (more ranks than were saved, or a checkpoint from before ``rng_ranks`` for ranks
above 0) seeds its generators from (seed, rank, iteration) instead, so no two ranks share a stream. Only
the current device's CUDA generator is saved, and it is restored only to a CUDA device: a checkpoint from
8 GPUs resumes on 1 GPU or on the CPU. (Training draws its augmentation from (seed, epoch, sample index),
not from these generators; they are kept so that any other draw resumes exactly.)
"""

from __future__ import annotations

import os
import random
import subprocess

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from inference.weights import load_checkpoint
from storage.io import atomic_write
from training.build import raw_module
from training.steps import Nets
from utils.errors import UserInputError

FORMAT_VERSION = 2  # 2: weights-only loadable (RNG states as tensors), one CUDA generator


def git_revision() -> str:
    """Short git revision of the code, or 'unknown' outside a checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def rng_state(device: torch.device | None = None) -> dict:
    """Python, NumPy and torch generator states as plain values and tensors, plus the CUDA generator of
    ``device`` when it is a CUDA device (training draws no CUDA randomness; other GPUs are not this run's)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    """Restore what ``rng_state`` captured; a CUDA state goes to ``device`` only, and only when it is CUDA.

    Older checkpoints stored every visible GPU's generator (a list): then the first is taken, so a run
    saved on 8 GPUs resumes on 1 GPU or on the CPU."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    if isinstance(np_state, dict):
        np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                             np_state["has_gauss"], np_state["cached_gaussian"]))
    else:
        np.random.set_state(np_state)
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(cuda[0] if isinstance(cuda, list | tuple) else cuda, device)


def gather_rng_states(device: torch.device | None = None) -> list[dict]:
    """Every rank's ``rng_state`` in rank order (a collective under DDP: every rank must call it); one entry
    without a process group."""
    mine = rng_state(device)
    if not dist.is_initialized():
        return [mine]
    states: list = [None] * dist.get_world_size()
    dist.all_gather_object(states, mine)
    return states


def rank_rng_state(ckpt: dict, rank: int) -> dict | None:
    """The generator states ``rank`` resumes from: its own entry of ``rng_ranks``, rank 0's ``rng`` in a
    checkpoint without ``rng_ranks``, else None (the caller seeds from seed, rank and iteration)."""
    ranks = ckpt.get("rng_ranks")
    if ranks is not None:
        return ranks[rank] if rank < len(ranks) else None
    return ckpt["rng"] if rank == 0 else None


def save_checkpoint(state: dict, path: str) -> None:
    """Write atomically: temp file in the same folder, fsync, rename over ``path``, fsync the folder.

    A crash at any instant leaves either the old or the new file complete, never a torn one; a failed
    write (a full disk) removes its temp file and raises a one-line error naming ``path`` and the system's
    message.
    """
    try:
        with atomic_write(path, durable=True) as f:
            torch.save(state, f)
    except UserInputError as err:
        raise UserInputError(f"{err}; the previous checkpoint is unchanged") from None


def remove_stale_temp_files(folder: str) -> list[str]:
    """Delete ``.tmp-*`` files left in ``folder`` by a write that was killed before its rename."""
    if not os.path.isdir(folder):
        return []
    stale = [os.path.join(folder, n) for n in os.listdir(folder) if n.startswith(".tmp-")]
    for path in stale:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    return stale


def check_finite_weights(nets: Nets, where: str) -> None:
    """Refuse to save NaN/inf weights (one sync): raises naming the network and tensor; ``where`` says when."""
    for name, net in nets.named().items():
        params = {k: v for k, v in raw_module(net).state_dict().items() if v.is_floating_point()}
        if params and not torch.stack([torch.isfinite(p.detach()).all() for p in params.values()]).all():
            tensor = next(k for k, p in params.items() if not torch.isfinite(p.detach()).all())
            raise NonFiniteError(f"non-finite {name} weights ({tensor}) {where}")


class NonFiniteError(UserInputError):
    """A loss term or a weight became NaN/inf; the message names the iteration and the term."""


def load_pretrained_generator(generator: nn.Module, path: str, trust: bool = False) -> list[str]:
    """Initialise G from a checkpoint (e.g. a supervised run); returns occlusion keys it had to leave fresh."""
    ckpt = load_checkpoint(path, trust, "--pretrained")
    state, own = ckpt["generator"], generator.state_dict()
    mismatch = [k for k in state if k in own and state[k].shape != own[k].shape]
    if mismatch or any(k not in own for k in state if "occlusion" not in k):
        raise UserInputError(f"--pretrained {path}: architecture differs from this run's generator "
                             f"(checkpoint {ckpt['model_args']})")
    missing = [k for k in own if k not in state]
    if any("occlusion" not in k for k in missing):
        raise UserInputError(f"--pretrained {path}: checkpoint lacks generator weights {missing[:3]}")
    generator.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return missing


def check_resume_compatible(ckpt: dict, method: str, dataset: str, net_args: dict, path: str) -> None:
    """One-line error when the checkpoint is of another method, dataset or architecture than this run."""
    if "optimizers" not in ckpt:  # a weights-only export (scripts/export.py): G's weights, no training state
        raise UserInputError(f"--resume {path}: a weights-only file has no training state to resume from "
                             "(start a run from its weights with --pretrained)")
    saved_method = ckpt.get("method") or ckpt.get("config", {}).get("method")
    if saved_method != method:
        article = "an" if str(saved_method)[:1] in "aeiou" else "a"
        raise UserInputError(f"--resume {path}: checkpoint is from {article} {saved_method} run, not {method}")
    if ckpt.get("dataset", dataset) != dataset:
        raise UserInputError(f"--resume {path}: checkpoint was trained on '{ckpt['dataset']}', not '{dataset}' "
                             f"(drop --dataset to continue on '{ckpt['dataset']}')")
    saved = ckpt.get("net_args", {})
    for name in sorted(set(net_args) | set(saved)):
        if saved.get(name) != net_args.get(name):
            raise UserInputError(f"--resume {path}: {name} architecture {saved.get(name)} "
                                 f"differs from this run's {net_args.get(name)}")
