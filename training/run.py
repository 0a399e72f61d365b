"""One run's objects: ``build_run`` makes them once (``Run``, fixed from then on), resumed from a checkpoint when
asked, and ``save`` writes the run to one.

``Run`` holds what is built (config, run description, data, networks, optimisers, schedules, step context, fault
handling, log); ``Run.state`` (training/state.py) is the one part that changes as the run trains. Checkpoints
(``run_dir/last.pt`` every epoch and every ``checkpoint_every`` iterations, ``best.pt`` on a new best validation
mean, ``epoch_<N>.pt`` after each of ``snapshot_epochs``) continue a run bit-exactly; their format is the
``checkpoint`` package's. A continuation (``--continue_from``, training/continuation.py) is a new run built
the same way and restored from another run's checkpoint by the same ``restore``: G's states alone.
"""

from __future__ import annotations

import os
import re
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from tqdm import tqdm

from checkpoint import (
    LOADED_FROM,
    fallback_note,
    gather_rng_states,
    load_checkpoint,
    load_training_state,
    rank_rng_state,
    remove_stale_temp_files,
    rng_state,
    save_checkpoint,
    set_rng_state,
    training_checkpoint,
)
from config import Config
from datasets import build_dataset
from datasets.base import PoseDataset
from datasets.sampler import EpochSampler
from inference.evaluate import InferenceSettings, inference_settings, make_eval_loader
from runtime.device import Precision, choose_precision, precision_note, resolve_compile
from runtime.distributed import DistInfo, all_ranks_agree, init_distributed, main_rank_value
from runtime.system import derived_seed, rank_seed, seed_everything, seed_generators, tune_malloc
from training.build import (
    build_nets,
    build_optimizers,
    build_schedulers,
    build_step_context,
    lr_scaling_note,
    place_nets,
    rescale_batch_lr,
    resolve_for_dataset,
)
from training.continuation import continued_state, lineage
from training.data import make_train_loader, resolve_workers
from training.guard import GuardedStep, guarded_step, this_process
from training.preflight import check_readable_on_every_rank, preflight
from training.rundir import MOVE, RESTART, moved_within, prepare_run_dir
from training.runlock import RunLock
from training.runlog import RunLog
from training.spec import RunSpec
from training.state import TrainState, resumed_state
from training.stats import DivergedError
from training.steps import Nets, StepContext, raw_module
from utils.errors import OneLineExit, UserInputError

T = TypeVar("T")


@dataclass(frozen=True)
class Run:
    """Every object of one run, as ``build_run`` made them; only ``state`` changes as it trains."""

    cfg: Config
    spec: RunSpec
    dist: DistInfo
    device: torch.device
    train_set: PoseDataset
    val_set: PoseDataset
    train_loader: torch.utils.data.DataLoader
    sampler: EpochSampler  # the train loader's
    val_loader: torch.utils.data.DataLoader
    nets: Nets
    net_args: dict  # constructor arguments of each network, by name
    optims: dict
    schedulers: dict
    ctx: StepContext
    precision: Precision  # ctx.dtype and why it was chosen (the first log line says it)
    guard: GuardedStep  # the fault handling around each step (training/guard.py)
    infer: InferenceSettings
    log: RunLog
    run_id: str  # kept by every checkpoint of this run
    state: TrainState
    continued_from: dict | None = None  # a continuation's source (``training.continuation.lineage``)

    def say(self, msg: str) -> None:
        """Print a line from the main rank only (between progress-bar updates)."""
        if self.dist.is_main:
            tqdm.write(msg)

    def last_good(self) -> str:
        """Where the last complete checkpoint is, for error messages."""
        path = os.path.join(self.spec.run_dir, "last.pt")
        return f"last good checkpoint kept: {path}" if os.path.isfile(path) else \
            f"no checkpoint saved yet in {self.spec.run_dir}"


@dataclass(frozen=True)
class CheckedRun:
    """What ``check_run`` read, built and decided: all a run has before it moves or writes anything."""

    cfg: Config  # resolved for the dataset (``resolve_for_dataset``)
    resumed: dict | None  # the --resume checkpoint
    continued: dict | None  # the --continue_from checkpoint
    pretrained: dict | None  # the --pretrained checkpoint
    train_set: PoseDataset
    val_set: PoseDataset
    nets: Nets
    net_args: dict
    layout: str  # what the run may do with its directory (``training.rundir.check_run_dir``)


def check_run(cfg: Config, spec: RunSpec, dist: DistInfo, cache_images: bool = True) -> CheckedRun:
    """Read the run's checkpoints and data, build its networks and refuse the run (``preflight``) before
    anything in its directory is moved or written; ``build_run`` goes on from here, ``--check`` stops here
    (``cache_images`` False: no decoding of every image into memory, which only a run needs)."""
    resumed = read_on_every_rank("--resume", spec.resume, spec.trust_checkpoint, dist) if spec.resume else None
    continued = read_on_every_rank("--continue_from", spec.continue_from, spec.trust_checkpoint, dist) \
        if spec.continue_from else None
    pretrained = read_on_every_rank("--pretrained", cfg.pretrained, spec.trust_checkpoint, dist) \
        if cfg.pretrained and not spec.resume else None
    seed_everything(rank_seed(cfg.seed, dist.rank), cfg.deterministic)
    train_set, val_set = load_data(cfg if cache_images else cfg.with_overrides({"cache_images": False}), spec)
    cfg = resolve_for_dataset(cfg, train_set.spec)  # delta None -> the dataset metric's threshold
    nets, net_args = build_nets(cfg, train_set.spec.num_joints)  # a continuation's P and C stay as built here
    layout = preflight(cfg, spec, dist.world_size, resumed, pretrained, net_args, nets.generator.state_dict(),
                       train_set, val_set, continued)
    return CheckedRun(cfg, resumed, continued, pretrained, train_set, val_set, nets, net_args, layout)


def build_run(cfg: Config, spec: RunSpec, lock: RunLock | None = None) -> Run:
    """Every object of a run, resumed from ``spec.resume`` or continuing ``spec.continue_from`` when given.
    ``check_run`` refuses the run before anything in its directory is moved or written (``lock``: the
    directory's, held by the caller, which follows the directory when ``--overwrite`` moves the old one aside)."""
    tune_malloc()  # glibc: reuse freed activation buffers instead of fresh pages each step (CPU)
    dist, device = init_distributed(spec.device)
    checked = check_run(cfg, spec, dist)
    cfg, resumed, continued, pretrained = checked.cfg, checked.resumed, checked.continued, checked.pretrained
    nets, layout = checked.nets, checked.layout
    moved = moved_within(pretrained[LOADED_FROM], spec.run_dir) if pretrained is not None and layout == MOVE \
        else None
    aside = on_main_rank(dist, lambda: prepare_run_dir(spec.run_dir, layout, lock, resumed))  # only now: moves, writes
    if moved is not None:  # G's file went aside with the old run: config.json and checkpoints name where it is now
        cfg = cfg.with_overrides({"pretrained": os.path.join(aside, moved)}, {"pretrained": "--pretrained"})
    if pretrained is not None:
        fresh = load_pretrained(nets.generator, pretrained)
        if dist.is_main:
            tqdm.write(f"initialised G from {cfg.pretrained}" + (f" ({len(fresh)} occlusion tensors fresh)"
                                                                 if fresh else ""))
    state, position_note = (TrainState(), None) if resumed is None else resumed_state(
        resumed["state"], resumed["world_size"], dist.world_size, cfg.batch_size)
    if continued is not None:
        state = continued_state(continued["state"])
    run = assemble(cfg, spec, dist, device, (checked.train_set, checked.val_set), nets, checked.net_args, state,
                   resumed["run_id"] if resumed is not None else uuid.uuid4().hex,
                   lineage(continued) if continued is not None else (resumed or {}).get("continued_from"))
    if dist.is_main:
        remove_stale_temp_files(spec.run_dir)  # left by a checkpoint write that was killed; the folder is ours
    if resumed is not None:
        for note in (fallback_note(spec.resume, resumed[LOADED_FROM]), position_note):
            if note:
                run.say(note)
        restore(run, resumed)
        return run
    if layout == RESTART:
        run.log.truncate_after(0)  # the stopped start's epoch lines, if it got that far, are not this run's
    if continued is not None:
        restore(run, continued, continuation=True)
    return run


def assemble(cfg: Config, spec: RunSpec, dist: DistInfo, device: torch.device,
             data: tuple[PoseDataset, PoseDataset], nets: Nets, net_args: dict, state: TrainState,
             run_id: str, continued_from: dict | None = None) -> Run:
    """The run around its checked data and built networks: placement, optimisers, schedules, step context,
    fault handling, loaders, log (``continued_from``: a continuation's source)."""
    train_set, val_set = data
    compiled, compile_note = resolve_compile(cfg.compile, device)  # eager, with one line, where it cannot work
    nets = place_nets(nets, device, cfg.channels_last, compiled, dist, cfg.sync_bn)
    global_batch = cfg.batch_size * dist.world_size
    optims = build_optimizers(nets, cfg, device, global_batch)
    precision = choose_precision(cfg.amp, device)
    ctx = build_step_context(device, precision.dtype, optims, cfg.grad_clip, cfg.channels_last)
    train_loader, sampler = make_train_loader(train_set, cfg, dist, spec, device)
    run = Run(cfg=cfg, spec=spec, dist=dist, device=device, train_set=train_set, val_set=val_set,
              train_loader=train_loader, sampler=sampler,
              val_loader=make_eval_loader(val_set, cfg.batch_size, resolve_workers(cfg.workers, device), dist,
                                          spec.max_val_samples,
                                          pin_memory=device.type == "cuda"),
              nets=nets, net_args=net_args, optims=optims, schedulers=build_schedulers(optims, cfg), ctx=ctx,
              precision=precision,
              guard=guarded_step(ctx, nets, spec.skip_bad_images, spec.skip_nonfinite,
                                 all_ranks_agree if dist.distributed else this_process),
              infer=inference_settings(cfg, val_set.spec, device, cfg.flip_test),
              log=RunLog(spec.run_dir, dist.is_main, spec.tensorboard), run_id=run_id, state=state,
              continued_from=continued_from)
    for note in (precision_note(ctx.dtype, device), compile_note, lr_scaling_note(cfg, global_batch)):
        if note:
            run.say(note)
    return run


def read_on_every_rank(flag: str, path: str, trust: bool, dist: DistInfo) -> dict:
    """The checkpoint ``flag`` names, once every rank has said it can read it (``check_readable_on_every_rank``)."""
    check_readable_on_every_rank(flag, path, dist)
    return load_checkpoint(path, trust, flag)


def load_data(cfg: Config, spec: RunSpec) -> tuple[PoseDataset, PoseDataset]:
    """The train and val sets (``preflight`` checks them)."""
    return (build_dataset(spec.dataset, spec.path, spec.train_split, cfg, train=True, flag="--train_split"),
            build_dataset(spec.dataset, spec.path, spec.val_split, cfg, train=False, flag="--val_split"))


def load_pretrained(generator: torch.nn.Module, ckpt: dict) -> list[str]:
    """Initialise G from a checkpoint (e.g. a supervised run) that ``check_pretrained`` accepted; returns the
    occlusion tensors it leaves fresh (a single-task G starting a multi-task one)."""
    own = generator.state_dict()
    generator.load_state_dict({k: v for k, v in ckpt["generator"].items() if k in own}, strict=False)
    return [k for k in own if k not in ckpt["generator"]]


def on_main_rank(dist: DistInfo, action: Callable[[], T]) -> T | None:
    """Run ``action`` on the main rank and return its result on every rank; under DDP every rank stops with
    its one-line error if it failed, rather than waiting in the next collective for a rank that has left."""
    error, result = None, None
    if dist.is_main:
        try:
            result = action()
        except OneLineExit as err:
            error = str(err)
    if dist.distributed:
        error, result = main_rank_value((error, result))
    if error is not None:
        raise UserInputError(error)
    return result


def restore(run: Run, ckpt: dict, continuation: bool = False) -> None:
    """Continue from ``ckpt`` (its position is ``run.state`` already): weights, optimisers, schedules, loss
    scalers, this rank's generators; the log is cut back to the position. A ``continuation`` (a new run from
    another run's checkpoint, training/continuation.py) takes G's states alone: its P and C keep their fresh
    weights, with their schedules moved on to the position, and its log is its own."""
    taken = {"generator"} if continuation else set(run.nets.named())

    def own(states: dict) -> dict:
        return {k: v for k, v in states.items() if k in taken}

    load_training_state(ckpt, own({k: raw_module(v) for k, v in run.nets.named().items()}), own(run.optims),
                        own(run.schedulers), own(run.ctx.scalers))
    path, st = ckpt[LOADED_FROM], run.state
    if continuation:
        fresh = [k for k in run.nets.named() if k not in taken]
        for k in fresh:
            move_schedule_on(run.schedulers[k], st.epoch)
        run.say(f"continued {path} as a new run after epoch {st.epoch} (iteration {st.iteration}): G with its "
                f"optimiser and schedule, and the data stream, carried over"
                + (f"; {' and '.join(fresh)} fresh" if fresh else ""))
    else:
        dropped = run.log.truncate_after(st.epoch)
        if dropped:
            run.say(f"note: dropped {dropped} from {run.log.path} (a write cut short by a crash or a full disk)")
        run.say(f"resumed {path}: epoch {st.epoch}, step {st.epoch_step}, iteration {st.iteration}")
        batch = run.cfg.batch_size
        rescaled = rescale_batch_lr(run.optims, run.schedulers, run.cfg, batch * ckpt["world_size"],
                                    batch * run.dist.world_size)
        if rescaled:
            run.say(rescaled)
    rng = rank_rng_state(ckpt, run.dist.rank)  # last: nothing after it draws
    if rng is not None:
        set_rng_state(rng, run.device)
    else:  # a rank the checkpoint has no states for (more ranks than were saved): its own, not rank 0's
        seed_generators(derived_seed(run.cfg.seed, run.dist.rank, st.iteration))


def move_schedule_on(scheduler: torch.optim.lr_scheduler.LRScheduler, epochs: int) -> None:
    """Step a fresh schedule through ``epochs`` epochs: the lr a network joining the run at that epoch gets,
    on the run's milestones (which count the run's epochs, not the network's)."""
    with warnings.catch_warnings():  # the network joins now: no optimiser step of it comes before these
        warnings.filterwarnings("ignore", re.escape("Detected call of `lr_scheduler.step()` before"), UserWarning)
        for _ in range(epochs):
            scheduler.step()


def config_record(run: Run) -> dict:
    """What a run's config.json holds: its resolved config, and for a continuation ``continued_from``
    (``training.continuation.lineage``) beside the config's keys."""
    return {**run.cfg.to_dict(), **({"continued_from": run.continued_from} if run.continued_from else {})}


def checkpoint_of(run: Run, rng_ranks: list[dict] | None = None) -> dict:
    """The run as a training checkpoint (``checkpoint.training_checkpoint``). ``rng_ranks``: every rank's
    generator states (``gather_rng_states``); this process's alone when not given."""
    return training_checkpoint(
        config=run.cfg.to_dict(), dataset=run.spec.dataset, data=run.spec.data(), net_args=run.net_args,
        nets={k: raw_module(v).state_dict() for k, v in run.nets.named().items()},
        optimizers={k: o.state_dict() for k, o in run.optims.items()},
        schedulers={k: s.state_dict() for k, s in run.schedulers.items()},
        scalers={k: s.state_dict() for k, s in run.ctx.scalers.items()},
        rng_ranks=rng_ranks or [rng_state(run.device)], world_size=run.dist.world_size,
        state=run.state.to_dict(), run_id=run.run_id, continued_from=run.continued_from)


def save(run: Run, name: str) -> None:
    """Atomically write ``run_dir/name`` (main rank only) after checking the weights are finite."""
    st = run.state
    check_finite_weights(run.nets, f"after iteration {st.iteration} (epoch {st.epoch}); {run.last_good()}")
    rng_ranks = gather_rng_states(run.device)  # a collective: every rank saves at the same iterations
    if run.dist.is_main:
        save_checkpoint(checkpoint_of(run, rng_ranks), os.path.join(run.spec.run_dir, name))
    if name == "last.pt":
        st.saved_at = st.position


def check_finite_weights(nets: Nets, where: str) -> None:
    """Refuse to save NaN/inf weights (one sync): raises naming the network and tensor; ``where`` says when."""
    for name, net in nets.named().items():
        params = {k: v for k, v in raw_module(net).state_dict().items() if v.is_floating_point()}
        if params and not torch.stack([torch.isfinite(p.detach()).all() for p in params.values()]).all():
            tensor = next(k for k, p in params.items() if not torch.isfinite(p.detach()).all())
            raise DivergedError(f"non-finite {name} weights ({tensor}) {where}")
