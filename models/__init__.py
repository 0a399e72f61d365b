"""Networks: the stacked-hourglass generator G and the discriminators P and C."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from models.discriminators import (
    HeatmapDiscriminator,
    conf_disc_input,
    confidence_discriminator,
    pose_disc_input,
    pose_discriminator,
)
from models.hourglass import Hourglass, Residual, StackedHourglass

__all__ = [
    "HeatmapDiscriminator",
    "Hourglass",
    "Residual",
    "StackedHourglass",
    "build_generator",
    "conf_disc_input",
    "confidence_discriminator",
    "count_parameters",
    "generator_arg_names",
    "pose_disc_input",
    "pose_discriminator",
]


def generator_arg_names() -> tuple[str, ...]:
    """Keys ``build_generator`` accepts: exactly StackedHourglass's constructor args."""
    return tuple(inspect.signature(StackedHourglass.__init__).parameters)[1:]


def build_generator(model_args: Mapping[str, Any]) -> StackedHourglass:
    """Build G from constructor arguments (as stored in checkpoints); unknown keys raise."""
    allowed = generator_arg_names()
    unknown = sorted(set(model_args) - set(allowed))
    if unknown:
        raise ValueError(f"unknown generator argument(s) {unknown}; valid: {list(allowed)}")
    if "num_joints" not in model_args:
        raise ValueError("generator arguments must include 'num_joints'")
    return StackedHourglass(**model_args)


def count_parameters(module: nn.Module) -> int:
    """Total number of parameter elements in ``module``."""
    return sum(p.numel() for p in module.parameters())
