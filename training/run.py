"""One run's objects and files: what it is (``RunSpec``, ``TrainState``, ``Run``), the checks before any work,
``build_run``, and the checkpoint a run is saved to and resumed from (``checkpoint``, ``restore``, ``save``).

Checkpoints (``run_dir/last.pt`` every epoch and every ``checkpoint_every`` iterations, ``best.pt`` on a new
best validation mean, ``epoch_<N>.pt`` after each of ``snapshot_epochs``) continue a run bit-exactly.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from config import Config
from datasets import build_dataset, check_image_files
from datasets.base import PoseDataset
from inference.predict import InferenceSettings, inference_settings, make_eval_loader
from inference.weights import LOADED_FROM, fallback_note, load_checkpoint
from runtime.device import autocast_dtype, precision_note
from runtime.distributed import DistInfo, all_ranks_agree, failing_ranks, first_error, init_distributed
from runtime.system import derived_seed, seed_everything, seed_generators, tune_malloc
from training.build import (
    build_nets,
    build_optimizers,
    build_schedulers,
    place_nets,
    raw_module,
)
from training.checkpoint import (
    FORMAT_VERSION,
    check_finite_weights,
    check_resume_compatible,
    gather_rng_states,
    git_revision,
    load_pretrained_generator,
    rank_rng_state,
    remove_stale_temp_files,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from training.data import make_train_loader, resolve_workers
from training.rundir import RESTART, check_run_dir, prepare_run_dir
from training.runlock import RunLock
from training.runlog import RunLog
from training.steps import Nets, StepContext
from utils.errors import UserInputError


@dataclass
class RunSpec:
    """Where a run reads and writes, and how it treats faults: everything a run needs besides the config."""

    dataset: str
    path: str | None
    train_split: str
    val_split: str
    run_dir: str
    device: str = "auto"
    resume: str | None = None
    overwrite: bool = False  # a fresh run into a non-empty run_dir moves the old files aside first
    trust_checkpoint: bool = False  # allow full-pickle loads of old checkpoints (--trust_checkpoint)
    max_train_samples: int | None = None
    max_val_samples: int | None = None
    skip_nonfinite: bool = False
    skip_bad_images: bool = False
    tensorboard: bool = False


@dataclass
class TrainState:
    """Position in the run; saved in every checkpoint."""

    epoch: int = 0  # epoch being trained
    epoch_step: int = 0  # steps of ``epoch`` already done
    iteration: int = 0  # steps done in the whole run
    best_metric: float = -math.inf
    sums: dict = field(default_factory=dict)  # partial epoch statistics (host floats)
    summed_steps: int = 0  # steps that entered ``sums`` (skipped batches do not)
    skipped_batches: int = 0
    skipped_images: int = 0
    seconds: float = 0.0  # training time of this epoch so far


@dataclass
class Run:
    """Every object of one run, as ``build_run`` made them."""

    cfg: Config
    spec: RunSpec
    dist: DistInfo
    device: torch.device
    train_set: PoseDataset
    val_set: PoseDataset
    nets: Nets
    net_args: dict
    optims: dict
    schedulers: dict
    ctx: StepContext
    log: RunLog
    state: TrainState
    infer: InferenceSettings
    train_loader: torch.utils.data.DataLoader = None
    sampler: object = None
    val_loader: torch.utils.data.DataLoader = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # kept by every checkpoint of this run
    saved_at: tuple[int, int, int] | None = None  # (iteration, epoch, epoch_step) of this process's last last.pt

    def say(self, msg: str) -> None:
        """Print a line from the main rank only (between progress-bar updates)."""
        if self.dist.is_main:
            tqdm.write(msg)

    def last_good(self) -> str:
        """Where the last complete checkpoint is, for error messages."""
        path = os.path.join(self.spec.run_dir, "last.pt")
        return f"last good checkpoint kept: {path}" if os.path.isfile(path) else \
            f"no checkpoint saved yet in {self.spec.run_dir}"


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


def check_readable_on_every_rank(files: dict[str, str], dist: DistInfo) -> None:
    """Under DDP every rank reads --resume and --pretrained itself (no broadcast from rank 0): before any rank
    loads one, all agree that each can read it, or all stop with one line naming the ranks that cannot."""
    if not dist.distributed:
        return  # one process: loading reports a missing file itself
    for flag, path in files.items():
        bad = failing_ranks((os.path.isfile(path) or os.path.isdir(path)) and os.access(path, os.R_OK))
        if bad:
            raise UserInputError(f"{flag} {path}: cannot be read on {', '.join(bad)}; every rank reads it itself, "
                                 f"so it must be on a filesystem that every node mounts at the same path")


def build_run(cfg: Config, spec: RunSpec, lock: RunLock | None = None) -> Run:
    """Data, networks (placed, wrapped), optimisers, schedulers, log and state; resumed when asked. Every check
    comes before anything in the run directory is moved or written (``lock``: the directory's, held by the
    caller, which follows the directory when ``--overwrite`` moves the old one aside)."""
    tune_malloc()  # glibc: reuse freed activation buffers instead of fresh pages each step (CPU)
    dist, device = init_distributed(spec.device)
    check_readable_on_every_rank({"--resume": spec.resume} if spec.resume else
                                 {"--pretrained": cfg.pretrained} if cfg.pretrained else {}, dist)
    ckpt = load_checkpoint(spec.resume, spec.trust_checkpoint, "--resume") if spec.resume else None
    if ckpt is not None:
        check_epochs_left(ckpt, cfg.epochs)
    layout = check_run_dir(spec.run_dir, ckpt, spec.overwrite)  # the cheap refusal before reading data
    seed_everything(cfg.seed + dist.rank, cfg.deterministic)
    train_set, val_set = load_data(cfg, spec, dist.world_size)
    nets, net_args = build_nets(cfg, train_set.spec.num_joints)
    fresh = load_pretrained_generator(nets.generator, cfg.pretrained, spec.trust_checkpoint) \
        if not spec.resume and cfg.pretrained else None
    on_main_rank(dist, lambda: prepare_run_dir(spec.run_dir, layout, lock))  # only now: moves, writes
    if fresh is not None and dist.is_main:
        tqdm.write(f"initialised G from {cfg.pretrained}" + (f" ({len(fresh)} occlusion tensors fresh)"
                                                             if fresh else ""))
    nets = place_nets(nets, device, cfg.channels_last, cfg.compile, dist, cfg.sync_bn)
    optims = build_optimizers(nets, cfg, device)
    dtype = autocast_dtype(cfg.amp, device)
    # fp16: one GradScaler per optimiser. G, P and C each take their own backward and scaler.step/update at a
    # different point of Algorithm 1, and their losses (G's MSE, P's and C's BCE) differ in gradient size by
    # orders of magnitude: one shared scale would be set by whichever overflows first (an inf in P's backward
    # would halve the scale of G's next update too) and a shared update() per optimiser step would count one
    # iteration several times. Each scaler finds its own scale, and a checkpoint stores each.
    scalers = {k: torch.amp.GradScaler(device.type, enabled=dtype == torch.float16) for k in optims}
    ctx = StepContext(device, dtype, scalers, cfg.grad_clip, cfg.channels_last, spec.skip_nonfinite,
                      agree=all_ranks_agree if dist.distributed else None)
    run = Run(cfg, spec, dist, device, train_set, val_set, nets, net_args, optims, build_schedulers(optims, cfg),
              ctx, RunLog(spec.run_dir, dist.is_main, spec.tensorboard), TrainState(),
              inference_settings(cfg, val_set.spec, device, cfg.flip_test))
    note = precision_note(dtype, device)
    if note:
        run.say(note)
    if dist.is_main:
        remove_stale_temp_files(spec.run_dir)  # left by a checkpoint write that was killed; the folder is ours
    if ckpt is not None:
        note = fallback_note(spec.resume, ckpt[LOADED_FROM])
        if note:
            run.say(note)
        restore(run, ckpt, ckpt[LOADED_FROM])
    elif layout == RESTART:
        run.log.truncate_after(0)  # the stopped start's epoch lines, if it got that far, are not this run's
    run.train_loader, run.sampler = make_train_loader(train_set, cfg, dist, spec, device)
    run.val_loader = make_eval_loader(val_set, cfg.batch_size, resolve_workers(cfg.workers, device), dist,
                                      spec.max_val_samples, pin_memory=device.type == "cuda")
    return run


def check_epochs_left(ckpt: dict, epochs: int) -> None:
    """Refuse to resume a run that has done its ``epochs`` already (before anything is read or written)."""
    done = ckpt.get("state", {}).get("epoch", 0)
    if done >= epochs:
        raise UserInputError(f"--epochs: {ckpt[LOADED_FROM]} has already trained {done} of epochs={epochs}; pass "
                             f"--epochs N with N > {done} to train further")


def load_data(cfg: Config, spec: RunSpec, world_size: int) -> tuple[PoseDataset, PoseDataset]:
    """The train and val sets, checked before any work: not empty, an epoch with at least one step, and every
    image file that training and validation will read present and readable (found now, not after an epoch;
    ``--skip_bad_images`` lets training go on without the train images that are not)."""
    train_set = build_dataset(spec.dataset, spec.path, spec.train_split, cfg, train=True, flag="--train_split")
    val_set = build_dataset(spec.dataset, spec.path, spec.val_split, cfg, train=False, flag="--val_split")
    check_epoch_has_steps(len(train_set), cfg.batch_size, world_size, spec)
    bad = check_image_files(train_set, spec.max_train_samples, "--train_split", allow=spec.skip_bad_images)
    if bad:
        tqdm.write(f"note: {bad} train images cannot be read; --skip_bad_images skips them")
    check_image_files(val_set, spec.max_val_samples, "--val_split")
    return train_set, val_set


def on_main_rank(dist: DistInfo, action: Callable[[], None]) -> None:
    """Run ``action`` on the main rank; under DDP every rank then stops with its one-line error if it failed,
    rather than waiting in the next collective for a rank that has left."""
    error = None
    if dist.is_main:
        try:
            action()
        except UserInputError as err:
            error = str(err)
    if dist.distributed:
        error = first_error(error)
    if error is not None:
        raise UserInputError(error)


def checkpoint(run: Run, rng_ranks: list[dict] | None = None) -> dict:
    """Self-describing state of the whole run: tensors and plain values only. ``rng_ranks``: every rank's
    generator states (``gather_rng_states``); this process's alone when not given."""
    spec = run.spec
    return {
        "format_version": FORMAT_VERSION, "method": run.cfg.method, "dataset": spec.dataset,
        "data": {k: getattr(spec, k) for k in ("path", "train_split", "val_split", "max_train_samples",
                                                "max_val_samples")},
        "model_args": run.net_args["generator"], "net_args": run.net_args, "config": run.cfg.to_dict(),
        **{k: raw_module(v).state_dict() for k, v in run.nets.named().items()},
        "optimizers": {k: o.state_dict() for k, o in run.optims.items()},
        "schedulers": {k: s.state_dict() for k, s in run.schedulers.items()},
        "scalers": {k: s.state_dict() for k, s in run.ctx.scalers.items()},
        "world_size": run.dist.world_size,
        "rng": rng_ranks[0] if rng_ranks else rng_state(run.device), "rng_ranks": rng_ranks or [rng_state(run.device)],
        "state": vars(run.state).copy(), "git": git_revision(), "run_id": run.run_id,
    }


def restore(run: Run, ckpt: dict, path: str) -> None:
    """Continue from ``ckpt``: weights, optimisers, schedulers, scalers, RNG, position; the log is cut back."""
    check_resume_compatible(ckpt, run.cfg.method, run.spec.dataset, run.net_args, path)
    for name, net in run.nets.named().items():
        raw_module(net).load_state_dict(ckpt[name])
    for k, o in run.optims.items():
        o.load_state_dict(ckpt["optimizers"][k])
    for k, s in run.schedulers.items():
        s.load_state_dict(ckpt["schedulers"][k])
    for k, s in run.ctx.scalers.items():
        state = ckpt.get("scalers", {}).get(k) or ckpt.get("scaler") or {}
        # a bf16 or fp32 run saves an empty state, which an fp16 run's (enabled) scaler refuses: it then starts
        # from its default scale; a saved fp16 scale means nothing to a disabled scaler
        if state and s.is_enabled():
            s.load_state_dict(state)
    rng = rank_rng_state(ckpt, run.dist.rank)
    if rng is not None:
        set_rng_state(rng, run.device)
    else:  # a rank the checkpoint has no states for (more ranks than were saved): its own, not rank 0's
        seed_generators(derived_seed(run.cfg.seed, run.dist.rank, ckpt["state"]["iteration"]))
    run.state = TrainState(**ckpt["state"])
    run.run_id = ckpt.get("run_id") or run.run_id  # a checkpoint from before run ids: the run gets one now
    _convert_epoch_position(run, ckpt.get("world_size", run.dist.world_size))
    dropped = run.log.truncate_after(run.state.epoch)
    if dropped:
        run.say(f"note: dropped {dropped} from {run.log.path} (a write cut short by a crash or a full disk)")
    run.say(f"resumed {path}: epoch {run.state.epoch}, step {run.state.epoch_step}, iteration {run.state.iteration}")


def _convert_epoch_position(run: Run, saved_world: int) -> None:
    """A mid-epoch checkpoint of ``saved_world`` processes resumed on another number: ``epoch_step`` counts
    each rank's batches, so it is converted through the batches done by all ranks (the sampler deals the same
    epoch permutation round-robin over the ranks). Rounded down: up to one global batch is seen again."""
    st, world = run.state, run.dist.world_size
    if saved_world == world or st.epoch_step == 0:
        return
    done = st.epoch_step * saved_world  # batches of this epoch, all ranks together
    old, st.epoch_step = st.epoch_step, done // world
    again = (done - st.epoch_step * world) * run.cfg.batch_size
    run.say(f"note: checkpoint of {saved_world} process(es) resumed on {world}: epoch position {old} -> "
            f"{st.epoch_step} steps per process ({again} images of this epoch are seen again)")


def save(run: Run, name: str) -> None:
    """Atomically write ``run_dir/name`` (main rank only) after checking the weights are finite."""
    st = run.state
    check_finite_weights(run.nets, f"after iteration {st.iteration} (epoch {st.epoch}); {run.last_good()}")
    rng_ranks = gather_rng_states(run.device)  # a collective: every rank saves at the same iterations
    if run.dist.is_main:
        save_checkpoint(checkpoint(run, rng_ranks), os.path.join(run.spec.run_dir, name))
    if name == "last.pt":
        run.saved_at = (st.iteration, st.epoch, st.epoch_step)
