"""Flags that several entry points share, each defined once: the device, the precision, the flip test,
trusting a checkpoint, replacing outputs, and the accepted-but-ignored ``--loss``."""

from __future__ import annotations

import argparse
import sys

from config.default_config import CHOICES


def add_device_flag(p: argparse.ArgumentParser, default: str | None = "auto", more: str = "") -> None:
    """``--device``: where the networks run; ``more`` adds to the help (e.g. how it combines with other flags)."""
    p.add_argument("--device", default=default, help="auto | cpu | cuda | cuda:N" + more)


def add_amp_flag(p: argparse.ArgumentParser, default_is: str) -> None:
    """``--amp``: the precision; ``default_is`` says what an absent flag means."""
    p.add_argument("--amp", choices=CHOICES["amp"], default=None, help=f"mixed precision (default: {default_is})")


def add_trust_checkpoint_flag(p: argparse.ArgumentParser) -> None:
    """``--trust_checkpoint``: allow the full pickle load that a weights-only load refuses."""
    p.add_argument("--trust_checkpoint", action="store_true",
                   help="allow a full pickle load of an old-format checkpoint (runs code: only files you made)")


def add_inference_flags(p: argparse.ArgumentParser) -> None:
    """The flags of every tool that runs a trained G: device, flip test, precision, trusting the checkpoint."""
    add_device_flag(p)
    p.add_argument("--no_flip", action="store_true", help="disable flip-test averaging")
    add_amp_flag(p, "the checkpoint's amp")
    add_trust_checkpoint_flag(p)


def add_overwrite_flag(p: argparse.ArgumentParser, what: str) -> None:
    """``--overwrite``: replace ``what`` when it exists (named before it is replaced); refused without it."""
    p.add_argument("--overwrite", action="store_true", help=f"replace {what} when it exists (named first)")


class IgnoredLoss(argparse.Action):
    """``--loss mse``: the seed repository's scripts pass it. G's heatmap loss is always the paper's MSE (config
    ``mse_scale`` sets its scale), so the flag is accepted, changes nothing and says so in one line."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs) -> None:
        super().__init__(option_strings, argparse.SUPPRESS, choices=("mse",), default=argparse.SUPPRESS,
                         help="ignored (deprecated): G's loss is always the paper's MSE")

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print("note: --loss is deprecated and ignored: G's heatmap loss is always the paper's MSE "
              "(--set mse_scale=... chooses its scale)", file=sys.stderr)
