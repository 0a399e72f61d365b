"""Rebuilding G from a checkpoint: a training checkpoint or a weights-only export, read by the ``checkpoint``
package (``torch.load(weights_only=True)``), whose keys ``generator`` (state dict), ``model_args`` and
``config`` are all G needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from checkpoint import LOADED_FROM, check_model_args, load_checkpoint
from config import Config, config_from_dict
from models import build_generator
from runtime.device import place_module, resolve_device, use_device
from utils.errors import UserInputError


def generator_from_checkpoint(ckpt: dict, amp: str | None = None, flag: str = "--checkpoint"
                              ) -> tuple[Config, nn.Module]:
    """(resolved config, G with its weights) from a checkpoint dict, on CPU; ``amp`` overrides its precision.
    A saved config or ``model_args`` no run could have (an edited or damaged file) is refused in one line naming
    ``flag`` and the file, before G is built (``checkpoint.check_model_args``)."""
    source = f"{flag} {ckpt[LOADED_FROM]}" if LOADED_FROM in ckpt else flag
    cfg = config_from_dict({**ckpt.get("config", {}), **({"amp": amp} if amp is not None else {})},
                           f"{source}: config")
    check_model_args(ckpt["model_args"], f"{source}: model_args")
    try:
        generator = build_generator(ckpt["model_args"])
    except (TypeError, ValueError) as err:
        raise UserInputError(f"{source}: model_args are not a generator's: {err}") from None
    mismatch = state_mismatch(generator.state_dict(), ckpt["generator"])
    if mismatch:
        raise UserInputError(f"{source}: the generator weights do not match its model_args ({mismatch}; a "
                             f"corrupt or edited file)")
    generator.load_state_dict(ckpt["generator"])
    return cfg, generator


def state_mismatch(own: dict[str, torch.Tensor], saved: object) -> str | None:
    """The first difference between a network's state dict ``own`` and the ``saved`` one, in words; None
    when every tensor is there with its shape."""
    if not isinstance(saved, dict):
        return f"the weights are a {type(saved).__name__}, not a state dict"
    for key, tensor in own.items():
        if key not in saved:
            return f"{key} is missing"
        if not isinstance(saved[key], torch.Tensor) or saved[key].shape != tensor.shape:
            shape = tuple(saved[key].shape) if isinstance(saved[key], torch.Tensor) else type(saved[key]).__name__
            return f"{key} is {shape}, model_args make {tuple(tensor.shape)}"
    extra = next((k for k in saved if k not in own), None)
    return f"{extra} is not a weight of the network model_args make" if extra is not None else None


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
    cfg, generator = generator_from_checkpoint(ckpt, amp, "--checkpoint")
    return LoadedGenerator(ckpt, cfg, place_module(generator, dev, cfg.channels_last).eval(), dev)
