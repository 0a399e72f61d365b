"""The training loop both entry scripts share: build -> (resume) -> epochs of Algorithm 1 -> validate -> save.

``training.run.build_run`` makes every object of a run from the config and the run description; ``fit`` here
runs the epochs, each a pass of ``train_step`` (training/steps.py: one iteration of Algorithm 1, or the
supervised step) over the train loader, then validation, the epoch's log line, the learning-rate schedule and
the checkpoints. The faults a run meets are handled beside the loop, not inside it: each step runs inside the
run's ``guard`` (training/guard.py: unreadable images, non-finite losses), and ``train`` holds the run
directory's lock (training/runlock.py) and the stop signals of a scheduler (training/stopping.py) around it.
"""

from __future__ import annotations

import os
import re
import time
import warnings

import torch
from tqdm import tqdm

from checkpoint import LOADED_FROM
from config import Config
from inference.evaluate import evaluate
from models import count_parameters
from reporting.plots import plot_training_curves
from runtime.device import precision_name, resolve_device
from runtime.distributed import DistInfo, cleanup_distributed, init_distributed, process_group_timeout
from storage.io import write_json
from training.build import adversarial_params, check_sync_bn, error_loss_params
from training.run import Run, build_run, check_run, config_record, save
from training.rundir import CONTINUE, MOVE, NEW, RESTART, ROLLBACK
from training.runlock import run_dir_lock
from training.spec import RunSpec
from training.state import TrainState
from training.stats import DivergedError, StepStats, epoch_means
from training.steps import StepContext, to_device, train_step
from training.stopping import StopSignals, stop_here, stop_signals
from utils.errors import Interrupted, UserInputError


def train_epoch(run: Run, stop: StopSignals) -> tuple[int, int]:
    """Algorithm 1 (or the supervised step) over the rest of the current epoch, or up to an agreed stop: for each
    batch one ``train_step`` inside the run's fault handling; returns (steps, images) of the epoch."""
    st, cfg = run.state, run.cfg
    adversarial = adversarial_params(cfg) if st.epoch >= cfg.adversarial_warmup_epochs else None
    loss = error_loss_params(cfg)

    def step(batch: dict, ctx: StepContext) -> dict[str, torch.Tensor]:
        measure = (st.iteration + 1) % cfg.print_every == 0  # one batch per read-back: P and C's push on G
        return train_step(run.nets, run.optims, to_device(batch, ctx), ctx, loss, adversarial, measure)

    run.sampler.set_epoch(st.epoch, start=st.epoch_step * cfg.batch_size)
    for net in run.nets.named().values():
        net.train()
    stats, start = StepStats(run.device, st.iteration), time.perf_counter()
    bar = tqdm(stop.batches(run.train_loader), desc=f"epoch {st.epoch}", disable=not run.dist.is_main, leave=False,
               initial=st.epoch_step, total=st.epoch_step + len(run.train_loader))
    for batch in bar:
        outcome = run.guard(batch, step, st)
        st.epoch_step += 1  # a skipped batch is still a position in the epoch (mid-epoch resume skips it)
        if not outcome.taken:
            continue
        st.iteration += 1
        if outcome.stats is not None:
            stats.add(outcome.stats)
        save_now = cfg.checkpoint_every > 0 and st.iteration % cfg.checkpoint_every == 0
        if st.iteration % cfg.print_every == 0 or save_now:
            _read_back(run, stats)
            bar.set_postfix({k: f"{v / max(st.summed_steps, 1):.4g}" for k, v in st.sums.items()
                             if k.startswith("loss")})
        if save_now:
            st.seconds += time.perf_counter() - start
            start = time.perf_counter()
            save(run, "last.pt")
    _read_back(run, stats)
    st.seconds += time.perf_counter() - start
    return st.epoch_step, st.epoch_step * cfg.batch_size * run.dist.world_size


def _read_back(run: Run, stats: StepStats) -> None:
    """Fold the device statistics into the epoch sums (the loop's one sync), naming a non-finite term."""
    st = run.state
    try:
        sums, steps = stats.read_back()
    except DivergedError as err:
        raise DivergedError(f"{err} (epoch {st.epoch}); {run.last_good()}; "
                            f"lower the lr or pass --skip_nonfinite to skip such batches") from None
    for k, v in sums.items():
        st.sums[k] = st.sums.get(k, 0.0) + v
    st.summed_steps += steps


def epoch_record(st: TrainState, steps: int, images: int, lr: float, val: dict) -> dict:
    """The epoch's line of log.jsonl: mean statistics, speed, skips and the validation table."""
    rec = {"kind": "epoch", "epoch": st.epoch, "iterations": st.iteration, "lr": lr,
           "images_per_s": images / max(st.seconds, 1e-9), "seconds": st.seconds}
    rec.update(epoch_means(st.sums, st.summed_steps))
    rec["skipped_batches"], rec["skipped_images"] = st.skipped_batches, st.skipped_images
    rec.update({"val_mean": val["mean"], "val_metric": val["metric"], "val_per_joint": val["per_joint"]})
    return rec


def used_images(size: int, limit: int | None) -> str:
    """The images of a split a run uses: ``size``, or under --max_*_samples ``limit`` the first ``limit``
    with the split's size beside it ("8 (of 16)"), as the samplers draw from those only."""
    return str(size) if limit is None or limit >= size else f"{limit} (of {size})"


def fit(run: Run, stop: StopSignals | None = None) -> dict | None:
    """Train until ``epochs``: each epoch trains, validates, logs, steps the schedules and saves; returns the
    final validation result. Ctrl-C ends with one line naming the last checkpoint; a stop signal noted on
    ``stop`` saves the position and ends with one line naming it (``stop_here``)."""
    cfg, st = run.cfg, run.state
    stop = stop or StopSignals()
    ranks = f" | {run.dist.world_size} process(es), {torch.distributed.get_backend()}" if run.dist.distributed else ""
    run.say(f"{cfg.method} | {run.spec.dataset} | G {count_parameters(run.nets.generator):,} params | "
            f"device {run.device} | {precision_name(run.ctx.dtype, run.device, training=True)} "
            f"({run.precision.reason}){ranks} | "
            f"{used_images(len(run.train_set), run.spec.max_train_samples)} train / "
            f"{used_images(len(run.val_set), run.spec.max_val_samples)} val images")
    val = None
    try:
        while st.epoch < cfg.epochs:
            steps, images = train_epoch(run, stop)
            signum = stop.agreed()
            if signum:  # mid-epoch, or after the epoch's last step: validation waits for the resumed run
                stop_here(run, signum)
            val = evaluate(run.nets.generator, run.val_loader, run.val_set, run.infer, run.device, run.dist)
            end_epoch(run, steps, images, val)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; {run.last_good()}") from None
    finally:
        cleanup_distributed()
    return val


def end_epoch(run: Run, steps: int, images: int, val: dict) -> None:
    """The epoch's log line and summary, the schedules' step, then best.pt, a snapshot and last.pt."""
    cfg, st = run.cfg, run.state
    lr = run.optims["generator"].param_groups[0]["lr"]
    run.log.write(epoch_record(st, steps, images, lr, val))
    skipped = [f"{n} {what}" for n, what in ((st.skipped_batches, "non-finite batches"),
                                             (st.skipped_images, "unreadable images")) if n]
    run.say(f"epoch {st.epoch}: " + ", ".join(f"{k} {v:.4g}" for k, v in epoch_means(st.sums, st.summed_steps).items())
            + f" | val {val['metric']} {val['mean']:.2f}" + (f" | skipped {', '.join(skipped)}" if skipped else ""))
    with warnings.catch_warnings():
        # resumed from a stop after an epoch's last step, this process steps the schedule before any optimiser
        # step of its own: the order across the two processes is right, torch's check sees only this one
        warnings.filterwarnings("ignore", re.escape("Detected call of `lr_scheduler.step()` before"), UserWarning)
        for s in run.schedulers.values():
            s.step()
    improved = val["mean"] > st.best_metric
    st.best_metric = max(st.best_metric, val["mean"])
    st.next_epoch()
    if improved:  # best.pt first: a kill between the two writes then repeats this epoch's end
        save(run, "best.pt")
    if st.epoch in cfg.snapshot_epochs:  # st.epoch now counts completed epochs
        save(run, f"epoch_{st.epoch}.pt")
    save(run, "last.pt")


def train(cfg: Config, spec: RunSpec) -> dict | None:
    """Hold the run directory, build the run, record its config, fit it (a scheduler's stop signal saves and
    ends it), draw its curves."""
    try:
        dist, _ = init_distributed(spec.device)
        with run_dir_lock(spec.run_dir, dist) as lock:
            run = build_run(cfg, spec, lock)
            if run.dist.is_main:
                write_json(os.path.join(spec.run_dir, "config.json"), config_record(run))
            with stop_signals(run.dist.distributed) as stop:
                val = fit(run, stop)
            if run.dist.is_main and val is not None:
                curves = plot_training_curves(spec.run_dir)
                best = os.path.join(spec.run_dir, "best.pt")
                # after a rollback (--overwrite), the best epoch may lie in the folder moved aside
                where = best if os.path.isfile(best) else "its best.pt is in the run moved aside (--overwrite)"
                run.say(f"done: best val mean {run.state.best_metric:.2f} | {where} | {curves}")
    finally:  # e.g. a file one rank cannot read: leave the process group before exiting
        cleanup_distributed()
    return val


def check(cfg: Config, spec: RunSpec, processes: int = 1) -> str:
    """``--check``: what a run on ``processes`` processes checks before its first step (``check_run``: flags,
    config, data and every image file it reads, its checkpoints, the run directory's decision; the device, and
    under DDP the collective timeout and sync_bn), in this one process: no process group, no lock, nothing
    moved or written. Returns the line saying what passed; a refusal is the run's own one-line error."""
    if processes < 1:
        raise UserInputError(f"--check: {processes} processes; expected the number the run will start (1 or more)")
    device = resolve_device(spec.device)
    if processes > 1:
        process_group_timeout(os.environ)
    checked = check_run(cfg, spec, DistInfo(world_size=processes), cache_images=False)
    check_sync_bn(checked.cfg.sync_bn, processes > 1, device)
    files = "".join(f"{flag} {ckpt[LOADED_FROM]}; " for flag, ckpt in (("--resume", checked.resumed),
                    ("--continue_from", checked.continued), ("--pretrained", checked.pretrained)) if ckpt is not None)
    return (f"check passed: {cfg.method} run on {processes} process(es), device {device}; {spec.dataset} "
            f"'{spec.train_split}' {used_images(len(checked.train_set), spec.max_train_samples)} and "
            f"'{spec.val_split}' {used_images(len(checked.val_set), spec.max_val_samples)} samples"
            f"{'' if spec.dataset == 'synthetic' else ', their image files readable'}; {files}run directory "
            f"{spec.run_dir}: {run_dir_plan(spec.run_dir, checked.layout, checked.resumed)}; nothing was written")


def run_dir_plan(run_dir: str, layout: str, resumed: dict | None) -> str:
    """What the run will do with its directory (``training.rundir.check_run_dir``'s ``layout``), in words."""
    return {NEW: "a new run",
            RESTART: "an earlier start left no checkpoint there; the run starts it again",
            MOVE: f"--overwrite will move its files to {run_dir}.old-<time>/ and start again",
            CONTINUE: "the run continues there",
            ROLLBACK: f"--overwrite will move the run to {run_dir}.old-<time>/ and go back to "
                      f"{(resumed or {}).get(LOADED_FROM)}"}[layout]
