"""Reading checkpoints safely, and rebuilding G from one.

Every load goes through ``torch.load(weights_only=True)``: tensors and plain Python values only, so a
crafted file cannot run code. Training checkpoints (``last.pt``, ``best.pt``) and weights-only exports
(``scripts/export.py``) share the keys read here: ``generator`` (state dict), ``model_args``, ``config``,
``dataset``. A file written by an older version of this project that needs a full pickle load is refused
unless the caller passes ``trust=True`` (``--trust_checkpoint``): a pickle runs whatever code it names.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass

import torch
from torch import nn

from config import Config, config_from_dict
from models import build_generator
from runtime.device import place_module, resolve_device, use_device
from utils.errors import UserInputError


def resolve_checkpoint_path(path: str) -> str:
    """Accept a checkpoint file or a run directory (then its ``last.pt``)."""
    if os.path.isdir(path):
        path = os.path.join(path, "last.pt")
    if not os.path.isfile(path):
        raise UserInputError(f"checkpoint not found: {path}")
    return path


def load_checkpoint(path: str, trust: bool = False) -> dict:
    """Load on CPU whatever device saved it, tensors and plain values only; one-line error for a bad file.

    ``trust``: allow a full pickle load for files that need one (old checkpoints); only for files you made.
    """
    path = resolve_checkpoint_path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not _written_by_torch(path):  # torch reports any undecodable file as a refused pickle
            raise UserInputError(f"cannot load checkpoint {path}: not a file written by torch.save") from None
        if not trust:
            raise UserInputError(f"{path} holds objects other than tensors and plain values (an old checkpoint "
                                 f"format, or a crafted file): refused; pass --trust_checkpoint to load it "
                                 f"anyway, only if you made it yourself") from None
        ckpt = _full_load(path)
    except Exception as err:  # torch raises many types for a corrupt or foreign file
        raise UserInputError(f"cannot load checkpoint {path}: {type(err).__name__}") from None
    if not isinstance(ckpt, dict) or "generator" not in ckpt or "model_args" not in ckpt:
        raise UserInputError(f"{path} is not a checkpoint of this project (no generator / model_args)")
    return ckpt


_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")  # opens torch.save's pre-1.6 (non-zip) format


def _written_by_torch(path: str) -> bool:
    """Whether ``path`` is in one of torch.save's formats (a zip archive, or the legacy pickle stream)."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as f:
        return _LEGACY_MAGIC in f.read(32)


def _full_load(path: str) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise UserInputError(f"cannot load checkpoint {path}: {type(err).__name__}") from None


def generator_from_checkpoint(ckpt: dict, amp: str | None = None) -> tuple[Config, nn.Module]:
    """(resolved config, G with its weights) from a checkpoint dict, on CPU; ``amp`` overrides its precision."""
    cfg = config_from_dict({**ckpt.get("config", {}), **({"amp": amp} if amp is not None else {})})
    try:
        generator = build_generator(ckpt["model_args"])
    except (TypeError, ValueError) as err:
        raise UserInputError(f"checkpoint model_args are not a generator's: {err}") from None
    try:
        generator.load_state_dict(ckpt["generator"])
    except RuntimeError:
        raise UserInputError("checkpoint weights do not match its model_args (corrupt or edited file)") from None
    return cfg, generator


@dataclass
class LoadedGenerator:
    """G rebuilt from a checkpoint alone, in eval mode on its device, with what its test-time pipeline needs."""

    ckpt: dict
    cfg: Config
    generator: nn.Module
    device: torch.device


def load_generator(path: str, device: str = "auto", amp: str | None = None, trust: bool = False) -> LoadedGenerator:
    """Load ``path`` (checkpoint, export or run directory) and place G on ``device``, made the current CUDA
    device first (no context on GPU 0 for ``cuda:N``); ``amp`` overrides its precision."""
    dev = use_device(resolve_device(device))  # before any CUDA work, also the loader's pin-memory thread
    ckpt = load_checkpoint(path, trust)
    cfg, generator = generator_from_checkpoint(ckpt, amp)
    return LoadedGenerator(ckpt, cfg, place_module(generator, dev, cfg.channels_last).eval(), dev)
