"""A continuation (``--continue_from CKPT``): a new run that carries on the run which wrote CKPT, from one of
its epoch boundaries, and changes only what an arm of a study changes (README, Training).

Carried over from CKPT: G's weights, G's optimiser state (RMSprop's or Adam's moments), G's schedule and loss
scaler, the position (epochs and iterations done: the next epoch is the original's next) and every rank's
random generators. The sampler draws each epoch's order and augmentation from (seed, epoch, sample index),
so epochs E+1.. see exactly the data the original run saw there (no replay of epochs 1..E), and a
continuation that changes nothing reproduces the original's epochs bit for bit. P and C start fresh: built
from the run's seed like those of a new run, before the generators are restored, with their schedules moved
on to epoch E. CKPT's run directory is only read; the continuation writes its own (--model_name).

What may differ from CKPT's config: ``ARM_KEYS`` (the method and Algorithm 1's settings, which an arm
changes), ``RUN_KEYS`` (when to save and log, how many loader processes: no number a run computes depends on
them) and ``epochs``, which may grow (the schedule's milestones and factor must match, so a longer run has the
same schedule over the epochs both train). Everything else must be equal: data, augmentation, G's size,
optimiser, lr, schedule, batch, seed, precision. The precision ``amp=auto`` picks by the machine: continue on
the machine kind the original ran on for bit-exact epochs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from checkpoint import LOADED_FROM, check_training_checkpoint
from config import Config, config_from_dict
from storage.io import file_sha256
from training.spec import RunSpec
from training.state import TrainState
from utils.errors import UserInputError

# the method and the keys of Algorithm 1 (P's and C's networks included: they start fresh in a continuation)
ARM_KEYS = frozenset({
    "method", "use_pose_disc", "use_conf_disc", "alpha", "beta", "delta", "epsilon", "mse_scale", "g_adv_form",
    "gen_iters", "disc_iters", "adv_stacks", "disc_lr", "g_error_step", "adversarial_warmup_epochs",
    "disc_channels", "disc_depth",
})
# how a run is kept, not what it computes (data order and augmentation never depend on the worker count)
RUN_KEYS = frozenset({"snapshot_epochs", "checkpoint_every", "print_every", "workers"})
# the checkpoint's G already holds what a --pretrained G gave its run; a continuation refuses --pretrained
NOT_COMPARED = ARM_KEYS | RUN_KEYS | {"pretrained", "epochs"}


def config_differences(saved: Mapping, now: Mapping) -> list[str]:
    """The keys of this run's config ``now`` that a continuation of a run with config ``saved`` may not have,
    each as ``key=<now> (checkpoint: <saved>)``: any but ``NOT_COMPARED`` that differs, and fewer ``epochs``.
    Both as ``Config.to_dict`` gives them."""
    keys = sorted(k for k in set(saved) | set(now) if k not in NOT_COMPARED and saved.get(k) != now.get(k))
    if now["epochs"] < saved["epochs"]:
        keys = ["epochs", *keys]
    return [f"{k}={now.get(k)!r} (checkpoint: {saved.get(k)!r})" for k in keys]


def check_continuation(ckpt: dict, cfg: Config, spec: RunSpec, world_size: int, net_args: dict) -> None:
    """One-line refusal of a continuation of ``ckpt`` as the run ``cfg``/``spec`` on ``world_size`` processes
    (``net_args``: the constructor arguments of its networks), before anything is written: a file without
    training state, another format, a mid-epoch position, another data set or data, process count or G, a
    config that differs beyond an arm's keys, or the checkpoint's own run directory as the new run's."""
    path = ckpt[LOADED_FROM]
    flag = f"--continue_from {path}"
    check_training_checkpoint(ckpt, flag, "continue")
    state = ckpt["state"]
    if state["epoch_step"] != 0:
        raise UserInputError(f"{flag}: saved {state['epoch_step']} steps into epoch {state['epoch'] + 1}; a "
                             f"continuation starts at an epoch boundary: pass an epoch_<N>.pt snapshot, or a "
                             f"last.pt saved at the end of an epoch")
    if os.path.isdir(spec.run_dir) and os.path.samefile(os.path.dirname(os.path.abspath(path)), spec.run_dir):
        raise UserInputError(f"{flag}: the new run would write into the run it continues ({spec.run_dir}); "
                             f"pass --model_name NAME for a folder of its own")
    data = {**(ckpt.get("data") or {}), "dataset": ckpt["dataset"]}
    here = {**spec.data(), "dataset": spec.dataset}
    differ = [f"{k}={v!r} (checkpoint: {data.get(k)!r})" for k, v in here.items() if not _same_data(k, v, data.get(k))]
    if differ:
        raise UserInputError(f"{flag}: the data differs from the checkpoint's: {'; '.join(differ)} (drop the "
                             f"data flags to use the checkpoint's)")
    if ckpt["world_size"] != world_size:
        raise UserInputError(f"{flag}: trained by {ckpt['world_size']} process(es), continued on {world_size}: "
                             f"each process's share of the data stream would differ; use as many processes")
    if ckpt["model_args"] != net_args["generator"]:
        raise UserInputError(f"{flag}: generator architecture {ckpt['model_args']} differs from this run's "
                             f"{net_args['generator']}")
    differ = config_differences(config_from_dict(ckpt["config"]).to_dict(), cfg.to_dict())
    if differ:
        raise UserInputError(f"{flag}: the config differs from the checkpoint's in {'; '.join(differ)}; a "
                             f"continuation may change only the method, Algorithm 1's keys, "
                             f"{', '.join(sorted(RUN_KEYS))} and epochs (not fewer)")


def _same_data(key: str, here, saved) -> bool:
    """Whether a data setting of this run equals the checkpoint's (paths by the folder they name)."""
    if key == "path" and here and saved:
        return os.path.realpath(here) == os.path.realpath(saved)
    return here == saved


def continued_state(saved: dict) -> TrainState:
    """The state a continuation starts from: the checkpoint's position (an epoch boundary); its best
    validation mean starts again, so that best.pt is the best of the continuation's own epochs."""
    state = TrainState(**saved)
    state.best_metric = -math.inf
    return state


def lineage(ckpt: dict) -> dict:
    """Where a continuation continued from, for its checkpoints and config.json: the file (path, sha256), the
    run that wrote it (run_id) and its position (epochs and iterations done)."""
    path = ckpt[LOADED_FROM]
    return {"path": path, "sha256": file_sha256(path), "epoch": ckpt["state"]["epoch"],
            "iteration": ckpt["state"]["iteration"], "run_id": ckpt.get("run_id")}
