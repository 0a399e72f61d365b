"""Self-describing, crash-safe checkpoints and the RNG state they carry."""

from __future__ import annotations

import os
import random
import subprocess
import tempfile

import numpy as np
import torch

from utils.errors import UserInputError

FORMAT_VERSION = 1


def git_revision() -> str:
    """Short git revision of the code, or 'unknown' outside a checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def rng_state() -> dict:
    """Python, NumPy, torch (and CUDA) generator states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict, path: str) -> None:
    """Write atomically: temp file in the same folder, flush + fsync, rename over ``path``, fsync the folder.

    A crash at any instant leaves either the old or the new file complete, never a torn one.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_temp_files(folder: str) -> list[str]:
    """Delete ``.tmp-*.pt`` files left in ``folder`` by a write that was killed before its rename."""
    if not os.path.isdir(folder):
        return []
    stale = [os.path.join(folder, n) for n in os.listdir(folder) if n.startswith(".tmp-") and n.endswith(".pt")]
    for path in stale:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    return stale


def resolve_checkpoint_path(path: str) -> str:
    """Accept a checkpoint file or a run directory (then its ``last.pt``)."""
    if os.path.isdir(path):
        path = os.path.join(path, "last.pt")
    if not os.path.isfile(path):
        raise UserInputError(f"checkpoint not found: {path}")
    return path


def load_checkpoint(path: str) -> dict:
    """Load on CPU whatever device saved it; one-line error for a missing or foreign file."""
    path = resolve_checkpoint_path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for a corrupt or foreign file
        raise UserInputError(f"cannot load checkpoint {path}: {type(err).__name__}") from None
    if not isinstance(ckpt, dict) or "generator" not in ckpt or "model_args" not in ckpt:
        raise UserInputError(f"{path} is not a checkpoint of this project (no generator / model_args)")
    return ckpt


def generator_from_checkpoint(ckpt: dict, build_generator, amp: str | None = None) -> tuple:
    """(resolved config, G with its weights) from a checkpoint dict, on CPU; ``amp`` overrides its precision."""
    from config import config_from_dict

    cfg = config_from_dict({**ckpt.get("config", {}), **({"amp": amp} if amp is not None else {})})
    generator = build_generator(ckpt["model_args"])
    try:
        generator.load_state_dict(ckpt["generator"])
    except RuntimeError:
        raise UserInputError("checkpoint weights do not match its model_args (corrupt or edited file)") from None
    return cfg, generator
