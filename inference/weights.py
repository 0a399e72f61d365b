"""Rebuilding G from a checkpoint: a training checkpoint or a weights-only export, read by the ``checkpoint``
package (``torch.load(weights_only=True)``), whose keys ``generator`` (state dict), ``model_args`` and
``config`` are all G needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from checkpoint import load_checkpoint
from config import Config, config_from_dict
from models import build_generator
from runtime.device import place_module, resolve_device, use_device
from utils.errors import UserInputError


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
    ckpt = load_checkpoint(path, trust, "--checkpoint")
    cfg, generator = generator_from_checkpoint(ckpt, amp)
    return LoadedGenerator(ckpt, cfg, place_module(generator, dev, cfg.channels_last).eval(), dev)
