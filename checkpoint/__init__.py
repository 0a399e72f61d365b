"""The checkpoint file: what a training checkpoint holds, how it is written, how any checkpoint is read.

Every file the project writes with ``torch.save`` (a run's ``last.pt``, ``best.pt``, ``epoch_<N>.pt``, and the
weights-only exports of ``inference/export.py``) holds plain types only: tensors, numbers, strings, bools, None,
lists, tuples and dicts (a module's state dict is an ``OrderedDict``). ``torch.load(weights_only=True)`` reads
such a file on every torch from requirements.txt's floor up, and a crafted file cannot run code through it.
``save_checkpoint`` refuses anything else before it writes; ``load_checkpoint`` reads with ``weights_only=True``
only, unless ``trust`` (``--trust_checkpoint``) allows a full pickle load of a file the user made elsewhere.

A training checkpoint, format ``FORMAT_VERSION`` (``training_checkpoint``):

    format_version    FORMAT_VERSION
    method, dataset   how and on what the run trains
    data              path, splits and sample limits (``--resume`` defaults to them)
    config            the resolved config
    model_args        G's constructor arguments (test.py, predict.py and exports rebuild G from them)
    disc_args         P's and C's, by network name ({} without discriminators)
    generator, pose_disc, conf_disc    the state dicts of the networks present
    optimizers, schedulers, scalers    their states by network name (MultiStepLR's milestones as a dict)
    rng_ranks         every rank's generator states (``rng_state``), in rank order
    world_size        processes that trained it (``epoch_step`` counts one rank's batches)
    state             the position in the run (``training.state.TrainState``)
    git, run_id       the code's revision; the id every checkpoint of one run shares
    continued_from    a continuation's source: path, sha256, epoch, iteration and run_id of the checkpoint
                      it continued (``training.continuation``); None for any other run

Random generators under DDP: on resume rank r restores entry r of ``rng_ranks`` when there is one, so a run
resumed on as many ranks continues every rank's streams exactly; a rank without an entry (more ranks than
were saved) seeds its generators from (seed, rank, iteration) instead, so no two ranks share a stream. Only
the current device's CUDA generator is saved, and it is restored only to a CUDA device: a checkpoint from 8
GPUs resumes on 1 GPU or on the CPU. (Training draws its augmentation from (seed, epoch, sample index), not
from these generators; they are kept so that any other draw resumes exactly.)
"""

from __future__ import annotations

import collections
import contextlib
import os
import pickle
import random
import re
import subprocess
import zipfile

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from config import check_setting
from config.default_config import CONFIG as CONFIG_DEFAULTS
from storage.io import NOT_FOUND, atomic_write, file_problem
from utils.errors import UserInputError

FORMAT_VERSION = 3  # 3: plain types only (loads on the floor torch), one key per fact
LOADED_FROM = "_loaded_from"  # key added to every loaded checkpoint: the file it was read from
SNAPSHOT = re.compile(r"epoch_(\d+)\.pt")  # the trainer's snapshots (snapshot_epochs)
NETWORKS = ("generator", "pose_disc", "conf_disc")
CONFIG_KEYS = frozenset(CONFIG_DEFAULTS)
PLAIN_LEAVES = (torch.Tensor, bool, int, float, str, type(None))  # exact types: np.float64 is a float, pickled as
# a NumPy scalar; an nn.Parameter is a Tensor, pickled through its own rebuild function


# ---- what a training checkpoint holds ---------------------------------------------------------------------

def training_checkpoint(*, config: dict, dataset: str, data: dict, net_args: dict[str, dict],
                        nets: dict[str, dict], optimizers: dict[str, dict], schedulers: dict[str, dict],
                        scalers: dict[str, dict], rng_ranks: list[dict], world_size: int, state: dict,
                        run_id: str, continued_from: dict | None = None) -> dict:
    """A training checkpoint (module doc) from the run's parts, all by network name: ``net_args`` the
    constructor arguments, the others state dicts. Schedules become plain dicts (MultiStepLR's milestones are
    a ``Counter``, which torch's weights-only loader refused before 2.4)."""
    return {
        "format_version": FORMAT_VERSION, "method": config["method"], "dataset": dataset, "data": dict(data),
        "config": config, "model_args": net_args["generator"],
        "disc_args": {k: v for k, v in net_args.items() if k != "generator"},
        **nets,
        "optimizers": optimizers,
        "schedulers": {k: {n: dict(v) if isinstance(v, collections.Counter) else v for n, v in s.items()}
                       for k, s in schedulers.items()},
        "scalers": scalers, "rng_ranks": rng_ranks, "world_size": world_size, "state": state,
        "git": git_revision(), "run_id": run_id, "continued_from": continued_from,
    }


def check_training_checkpoint(ckpt: dict, flag: str, verb: str, hint: str = "") -> None:
    """One-line refusal (naming ``flag``) of a checkpoint a run cannot ``verb`` (resume, continue): a
    weights-only file, or another format than this version writes (``hint``: what to do instead)."""
    if "optimizers" not in ckpt:  # a weights-only export (scripts/export.py): G's weights, no training state
        raise UserInputError(f"{flag}: a weights-only file has no training state to {verb} from (start a run "
                             f"from its weights with --pretrained)")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise UserInputError(f"{flag}: checkpoint format {ckpt.get('format_version')}, this version {verb}s "
                             f"format {FORMAT_VERSION} only{hint}")


def net_args_of(ckpt: dict) -> dict[str, dict]:
    """The constructor arguments of every network a training checkpoint holds, by network name."""
    return {"generator": ckpt["model_args"], **ckpt["disc_args"]}


# Bounds of G's constructor arguments that are no config key (``check_model_args``; the others are config keys
# and take the config's RANGES): the datasets here have 14 or 16 joints, whole-body skeletons 133 (COCO-WholeBody).
MODEL_ARG_RANGES = {"num_joints": (1, 256), "in_channels": (1, 16)}


def check_model_args(model_args: object, where: str) -> None:
    """Refuse ``model_args`` (G's constructor arguments, as a checkpoint holds them) that ask for a network no
    config could: a config key's value outside its type or ``RANGES`` (``config.check_setting``), or a
    ``MODEL_ARG_RANGES`` key outside its bounds. Checked before G is built: an edited ``channels=1e9`` would
    otherwise end in an allocation of hundreds of GB. Unknown keys are left to ``models.build_generator``'s
    refusal. One line naming ``where`` (the file and the flag that gave it)."""
    if not isinstance(model_args, dict):
        raise UserInputError(f"{where}: expected a dict of generator arguments, found {type(model_args).__name__}")
    for key, value in model_args.items():
        if key in MODEL_ARG_RANGES:
            low, high = MODEL_ARG_RANGES[key]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise UserInputError(f"{where}: {key}={value!r} should be an int in [{low}, {high}]")
        elif key in CONFIG_KEYS:
            check_setting(key, value, where)


def load_training_state(ckpt: dict, nets: dict[str, nn.Module], optimizers: dict, schedulers: dict,
                        scalers: dict[str, torch.amp.GradScaler]) -> None:
    """Load a training checkpoint's states into a run's networks (unwrapped), optimisers, schedules and loss
    scalers, each dict by network name."""
    for name, net in nets.items():
        net.load_state_dict(ckpt[name])
    for k, o in optimizers.items():
        o.load_state_dict(ckpt["optimizers"][k])
    for k, s in schedulers.items():
        state = ckpt["schedulers"][k]
        if "milestones" in state:  # MultiStepLR keeps its milestones as a Counter (saved as a dict)
            state = {**state, "milestones": collections.Counter(state["milestones"])}
        s.load_state_dict(state)
    for k, s in scalers.items():
        state = ckpt["scalers"][k]
        # a bf16 or fp32 run saves an empty state, which an fp16 run's (enabled) scaler refuses: it then starts
        # from its default scale; a saved fp16 scale means nothing to a disabled scaler
        if state and s.is_enabled():
            s.load_state_dict(state)


def git_revision() -> str:
    """Short git revision of the code, or 'unknown' outside a checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ---- random generators -------------------------------------------------------------------------------------

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
    """Restore what ``rng_state`` captured; a CUDA state goes to ``device`` only, and only when it is CUDA."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


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
    """The generator states ``rank`` resumes from, or None when the checkpoint has none for it (the caller
    seeds from seed, rank and iteration)."""
    ranks = ckpt["rng_ranks"]
    return ranks[rank] if rank < len(ranks) else None


# ---- writing -----------------------------------------------------------------------------------------------

def plain_problem(value: object, where: str = "checkpoint") -> str | None:
    """Where ``value`` holds something other than plain types (module doc), e.g. ``checkpoint['x'][2]: Path``;
    None when it holds none."""
    if type(value) in PLAIN_LEAVES:
        return None
    if type(value) in (dict, collections.OrderedDict):
        items = [(f"{where} key {k!r}", k) for k in value] + [(f"{where}[{k!r}]", v) for k, v in value.items()]
    elif type(value) in (list, tuple):
        items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
    else:
        return f"{where}: {type(value).__module__}.{type(value).__qualname__}"
    for inner, v in items:
        problem = plain_problem(v, inner)
        if problem:
            return problem
    return None


def save_checkpoint(state: dict, path: str) -> None:
    """Write atomically: temp file in the same folder, fsync, rename over ``path``, fsync the folder.

    A crash at any instant leaves either the old or the new file complete, never a torn one; a failed write
    (a full disk) removes its temp file and raises a one-line error naming ``path`` and the system's message.
    Anything but plain types (module doc) is a bug here, refused before the write (``TypeError``)."""
    problem = plain_problem(state)
    if problem:
        raise TypeError(f"a checkpoint holds plain types only; {problem}")
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
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return stale


# ---- reading -----------------------------------------------------------------------------------------------

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
    says so). ``trust``: allow a full pickle load of a file that needs one; only for files you made.
    ``check_weights``: refuse networks holding NaN/inf weights.
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
    state = ckpt.get("state") or {}  # an export in a run directory has no position
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
        if not zipfile.is_zipfile(path):  # torch reports any undecodable file as a refused pickle
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


def _full_load(path: str, flag: str) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise UserInputError(f"{flag}: cannot load checkpoint {path}: {_damage(path, err)}") from None


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
