"""Reading checkpoints safely, and rebuilding G from one.

Every load goes through ``torch.load(weights_only=True)``: tensors and plain Python values only, so a
crafted file cannot run code. Training checkpoints (``last.pt``, ``best.pt``) and weights-only exports
(``scripts/export.py``) share the keys read here: ``generator`` (state dict), ``model_args``, ``config``,
``dataset``. A file written by an older version of this project that needs a full pickle load is refused
unless the caller passes ``trust=True`` (``--trust_checkpoint``): a pickle runs whatever code it names.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import zipfile
from dataclasses import dataclass

import torch
from torch import nn

from config import Config, config_from_dict
from models import build_generator
from runtime.device import place_module, resolve_device, use_device
from storage.io import NOT_FOUND, file_problem
from utils.errors import UserInputError

LOADED_FROM = "_loaded_from"  # key added to every loaded checkpoint: the file it was read from
SNAPSHOT = re.compile(r"epoch_(\d+)\.pt")  # the trainer's snapshots (snapshot_epochs)
NETWORKS = ("generator", "pose_disc", "conf_disc")


def resolve_checkpoint_path(path: str, flag: str = "--checkpoint", trust: bool = False) -> str:
    """The checkpoint file ``path`` names: itself, or for a run directory its ``last.pt``, and when that is
    missing the newest complete checkpoint beside it (``load_checkpoint``)."""
    if not os.path.isdir(path):
        _check_file(path, flag)
        return path
    last = os.path.join(path, "last.pt")
    if os.path.isfile(last):
        return last
    return load_checkpoint(path, trust, flag, check_weights=False)[LOADED_FROM]


def _check_file(path: str, flag: str) -> None:
    problem = file_problem(path)
    if problem == NOT_FOUND:
        raise UserInputError(f"{flag}: checkpoint not found: {path}")
    if problem is not None:
        raise UserInputError(f"{flag}: checkpoint {path} is {problem}; expected a .pt file")


def load_checkpoint(path: str, trust: bool = False, flag: str = "--checkpoint", check_weights: bool = True) -> dict:
    """Load on CPU whatever device saved it, tensors and plain values only; one-line error naming ``flag`` for a
    bad file. ``LOADED_FROM`` in the result names the file read.

    A run directory gives its ``last.pt``; when that is missing (a run killed while writing its first one) or
    cannot be loaded, the newest complete one of ``best.pt`` and the ``epoch_<N>.pt`` snapshots, by training
    position, so a half-written ``last.pt`` never hides a complete checkpoint beside it (``fallback_note``
    says so). ``trust``: allow a full pickle load for files that need one (old checkpoints); only for files
    you made. ``check_weights``: refuse networks holding NaN/inf weights.
    """
    if os.path.isdir(path):
        return _load_from_run_dir(path, trust, flag, check_weights)
    _check_file(path, flag)
    ckpt = _load_file(path, trust, flag)
    if check_weights:
        check_finite_networks(ckpt, path, flag)
    ckpt[LOADED_FROM] = path
    return ckpt


def _load_from_run_dir(folder: str, trust: bool, flag: str, check_weights: bool) -> dict:
    last = os.path.join(folder, "last.pt")
    failure = None
    if os.path.lexists(last):
        try:
            return load_checkpoint(last, trust, flag, check_weights)
        except UserInputError as err:
            failure = err
    others = [os.path.join(folder, "best.pt")] + sorted(
        (os.path.join(folder, n) for n in os.listdir(folder) if SNAPSHOT.fullmatch(n)),
        key=lambda p: -int(SNAPSHOT.fullmatch(os.path.basename(p)).group(1)))[:1]
    loaded = []
    for other in others:
        if os.path.isfile(other):
            with contextlib.suppress(UserInputError):
                loaded.append(load_checkpoint(other, trust, flag, check_weights))
    if not loaded:
        if failure is not None:
            raise failure
        raise UserInputError(f"{flag}: checkpoint not found: {last} (no checkpoint in {folder}: last.pt, best.pt "
                             f"or epoch_<N>.pt)")
    return max(loaded, key=_position)


def _position(ckpt: dict) -> tuple[int, int, int]:
    state = ckpt.get("state") or {}
    return state.get("iteration", -1), state.get("epoch", -1), state.get("epoch_step", -1)


def fallback_note(requested: str, loaded: str) -> str | None:
    """A note when the run directory ``requested`` gave the file ``loaded`` instead of its ``last.pt``."""
    last = os.path.join(requested, "last.pt")
    if not os.path.isdir(requested) or os.path.basename(loaded) == "last.pt":
        return None
    why = "cannot be loaded" if os.path.lexists(last) else "is missing (its write was cut short?)"
    return f"note: {last} {why}; using {loaded}, the newest complete checkpoint beside it"


def _load_file(path: str, trust: bool, flag: str) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not _written_by_torch(path):  # torch reports any undecodable file as a refused pickle
            raise UserInputError(f"{flag}: cannot load checkpoint {path}: not a file written by torch.save") from None
        if not trust:
            raise UserInputError(f"{flag}: {path} holds objects other than tensors and plain values (an old "
                                 f"checkpoint format, or a crafted file): refused; pass --trust_checkpoint to "
                                 f"load it anyway, only if you made it yourself") from None
        ckpt = _full_load(path, flag)
    except Exception as err:  # torch raises many types for a corrupt or foreign file
        raise UserInputError(f"{flag}: cannot load checkpoint {path}: {_damage(path, err)}; expected a complete "
                             f"file written by train_supervised.py, train_adversarial.py or scripts/export.py"
                             ) from None
    if not isinstance(ckpt, dict) or "generator" not in ckpt or "model_args" not in ckpt:
        raise UserInputError(f"{flag}: {path} is not a checkpoint of this project (no generator / model_args)")
    return ckpt


def _damage(path: str, err: Exception) -> str:
    """What is wrong with a file torch could not load, in words."""
    size = os.path.getsize(path)
    if size == 0:
        return "the file is empty"
    text = str(err).strip()
    if "central directory" in text or isinstance(err, EOFError | zipfile.BadZipFile):
        return f"the file is cut short or damaged ({size} bytes, its zip index is missing)"
    first = text.splitlines()[0][:120] if text else ""
    return f"the file is damaged or not a checkpoint ({type(err).__name__}{': ' + first if first else ''})"


def check_finite_networks(ckpt: dict, path: str, flag: str) -> None:
    """Refuse a checkpoint whose network weights hold NaN or inf: every prediction from it would be NaN (decoded
    to one arbitrary pixel), and training from it could not recover."""
    for name in NETWORKS:
        state = ckpt.get(name)
        if not isinstance(state, dict):
            continue
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
                raise UserInputError(f"{flag} {path}: {name} weight {key} holds NaN or infinite values; the "
                                     f"checkpoint cannot give valid predictions (saved after training "
                                     f"diverged, or damaged)")


_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")  # opens torch.save's pre-1.6 (non-zip) format


def _written_by_torch(path: str) -> bool:
    """Whether ``path`` is in one of torch.save's formats (a zip archive, or the legacy pickle stream)."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as f:
        return _LEGACY_MAGIC in f.read(32)


def _full_load(path: str, flag: str) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise UserInputError(f"{flag}: cannot load checkpoint {path}: {_damage(path, err)}") from None


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
