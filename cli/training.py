"""Flags of train_supervised.py and train_adversarial.py, and their mapping onto the config and the RunSpec.

Every flag that changes what is trained is an override of a config key (``FLAG_TO_KEY``, ``SWITCH_TO_KEY``),
so ``config.json``, checkpoints and result records describe the run completely. Paths, resuming and fault
handling go into the ``RunSpec``.
"""

from __future__ import annotations

import argparse
import os
import socket

from checkpoint import load_checkpoint
from cli.common import IgnoredLoss, add_amp_flag, add_device_flag, add_trust_checkpoint_flag
from config import Config, config_from_dict, load_config, parse_overrides, preset_name
from config.default_config import CHOICES
from datasets import DATASETS, DEFAULT_VAL_SPLIT
from runtime.distributed import launch_rank
from training.rundir import unfinished_start
from training.spec import RunSpec
from utils.errors import UserInputError

# flag -> config key for flags that set a value (None = not given on the command line)
FLAG_TO_KEY = {"batch_size": "batch_size", "lr": "lr", "epochs": "epochs", "optimizer_type": "optimizer",
               "print_every": "print_every", "seed": "seed", "workers": "workers", "amp": "amp",
               "alpha": "alpha", "beta": "beta", "pretrained": "pretrained"}
# Keys a resumed run cannot change: its optimisers and schedules are rebuilt from them and then take the
# checkpoint's state (checkpoint.load_training_state restores each optimiser's lr, momentum and weight decay,
# each schedule's milestones and factor), so a new value would be ignored while config.json recorded it; and
# the batch, in which the saved epoch position is counted (and to which lr_base_batch scaled the lr).
RESTORED_ON_RESUME = ("optimizer", "lr", "momentum", "weight_decay", "lr_milestones", "lr_gamma", "disc_lr",
                      "lr_base_batch", "batch_size")
# store_true flag -> (config key, value it sets)
SWITCH_TO_KEY = {"compile": ("compile", True), "no_occlusion": ("predict_occlusion", False),
                 "no_pose_disc": ("use_pose_disc", False), "no_conf_disc": ("use_conf_disc", False)}


def training_parser(description: str, method: str) -> argparse.ArgumentParser:
    """Parser with every flag of the ``method`` trainer."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(method=method)
    p.add_argument("--dataset", default=None,
                   help=f"one of: {', '.join(DATASETS)} (default: synthetic, or the --resume checkpoint's)")
    p.add_argument("--path", default=None, help="dataset directory (not needed for synthetic; --resume remembers it)")
    p.add_argument("--model_name", "--modelName", dest="model_name", default=None,
                   help="run name, a plain folder name: writes <save_root>/<model_name>/ (default: run, or the "
                        "--resume checkpoint's folder)")
    p.add_argument("--save_root", default="trainmodel", help="parent folder of run directories")
    p.add_argument("--overwrite", action="store_true",
                   help="start again in a run directory that holds a run: its files are moved to <run>.old-<time>/; "
                        "with --resume of an older checkpoint of the run, go back to it after moving the run there")
    p.add_argument("--config", default="config.default_config", help="preset module, e.g. config.cpu_small")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config entry")
    p.add_argument("--batch_size", type=int, default=None, help="images per step (config: batch_size)")
    p.add_argument("--lr", type=float, default=None, help="learning rate of G (config: lr)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (config: epochs)")
    p.add_argument("--optimizer_type", choices=CHOICES["optimizer"], default=None, help="config: optimizer")
    p.add_argument("--loss", action=IgnoredLoss)
    p.add_argument("--print_every", type=int, default=None, help="iterations between loss read-backs and log lines")
    p.add_argument("--train_split", default=None, help="split to train on (default: train)")
    p.add_argument("--val_split", default=None, help="split to validate on (default: the dataset's val/test split)")
    p.add_argument("--use_gpu", type=int, choices=[0, 1], default=None, help="seed-style: 1 = cuda:<gpu_device>")
    p.add_argument("--gpu_device", type=int, default=0, help="seed-style GPU index used with --use_gpu 1")
    add_device_flag(p, default=None, more=" (wins over --use_gpu)")
    p.add_argument("--resume", default=None,
                   help="run directory (its last.pt) or checkpoint to continue exactly; dataset, path, splits and "
                        "sample limits default to the checkpoint's")
    p.add_argument("--continue_from", default=None, metavar="CKPT",
                   help="start a new run (its own --model_name) that continues the run which wrote CKPT (an "
                        "epoch_<N>.pt snapshot or an epoch-end last.pt): G, its optimiser and schedule, the "
                        "position and the data stream carried over; P and C fresh; the config must equal the "
                        "checkpoint's except the method and Algorithm 1's keys (README, Training)")
    add_trust_checkpoint_flag(p)
    p.add_argument("--seed", type=int, default=None, help="random seed (config: seed)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (config: workers)")
    p.add_argument("--max_train_samples", type=int, default=None, help="train on the first N samples only")
    p.add_argument("--max_val_samples", type=int, default=None, help="validate on the first N samples only")
    add_amp_flag(p, "the config's amp")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks (config: compile)")
    p.add_argument("--skip_nonfinite", action="store_true", help="skip updates whose loss is NaN/inf")
    p.add_argument("--skip_bad_images", action="store_true", help="skip unreadable images, count them in the log")
    p.add_argument("--tensorboard", action="store_true", help="also log to run_dir/tensorboard")
    p.add_argument("--check", nargs="?", type=int, const=1, default=None, metavar="PROCESSES",
                   help="check everything a run checks before its first step (flags, config, data and image "
                        "files, checkpoints, the run directory) for a run on PROCESSES processes (default 1; "
                        "the DDP scripts pass theirs), in this process alone, then exit 0 without training or "
                        "writing anything; bad input gives the run's one-line error, exit code 2")
    if method == "adversarial":
        p.add_argument("--pretrained", default=None, help="initialise G from this (supervised) checkpoint "
                                                         "(config: pretrained)")
        p.add_argument("--alpha", type=float, default=None, help="weight of C's term in G's loss (config: alpha)")
        p.add_argument("--beta", type=float, default=None, help="weight of P's term in G's loss (config: beta)")
        p.add_argument("--no_pose_disc", action="store_true", help="ablation: drop P (config: use_pose_disc)")
        p.add_argument("--no_conf_disc", action="store_true", help="ablation: drop C (config: use_conf_disc)")
        p.add_argument("--no_occlusion", action="store_true",
                       help="ablation: G predicts pose heatmaps only (config: predict_occlusion)")
    return p


def resumed_settings(args: argparse.Namespace) -> dict | None:
    """What the flags default to on --resume or --continue_from (``resolve_config``, ``run_spec``): the
    checkpoint's dataset and data, and on --resume its config (a continuation resolves its config as a new run
    does; preflight then compares it with the checkpoint's); None without either flag. The run itself reads the
    checkpoint again, under its run directory's lock (``training.run.build_run``): the weights are not held
    here for the whole run."""
    flag, path = ("--resume", args.resume) if args.resume else ("--continue_from", args.continue_from)
    if not path:
        return None
    if args.resume and args.continue_from:
        raise UserInputError("--continue_from and --resume exclude each other: --continue_from starts a new run "
                             "from a checkpoint, --resume continues a run in its own folder (a continued run "
                             "too, without --continue_from)")
    if args.resume:
        check_has_checkpoint(args.resume)
    try:
        ckpt = load_checkpoint(path, args.trust_checkpoint, flag)
    except UserInputError as err:  # under torchrun every rank reads it: say which one could not
        rank = launch_rank()
        if rank is None:
            raise
        raise UserInputError(f"{rank} (host {socket.gethostname()}): {err}; every rank reads {flag} "
                             f"itself, so it must be on a filesystem every node mounts at the same path") from None
    return {k: ckpt.get(k) for k in ("config", "dataset", "data") if args.resume or k != "config"}


def check_has_checkpoint(resume: str) -> None:
    """A run directory whose start stopped before its first checkpoint has nothing to resume; the same command
    without --resume starts it again (training.rundir)."""
    if os.path.isdir(resume) and unfinished_start(resume):
        raise UserInputError(f"--resume {resume}: no checkpoint saved there yet (its run stopped before the "
                             f"first one); run the same command without --resume to start it again")


def resolve_config(args: argparse.Namespace, resumed: dict | None) -> Config:
    """Preset + flags + --set; on --resume the checkpoint's config (``resumed``: ``resumed_settings``) + only the
    flags given now (not those the checkpoint restores: ``check_restored_keys``); on --continue_from as for a
    new run (preflight compares it with the checkpoint's).
    ``method`` is the entry script's and cannot be overridden."""
    overrides, sources = {}, {}
    for flag, key in FLAG_TO_KEY.items():
        if getattr(args, flag, None) is not None:
            overrides[key], sources[key] = getattr(args, flag), f"--{flag}"
    for flag, (key, value) in SWITCH_TO_KEY.items():
        if getattr(args, flag, False):
            overrides[key], sources[key] = value, f"--{flag}"
    from_set = parse_overrides(args.set)
    overrides.update(from_set)
    sources.update({key: "--set" for key in from_set})
    if overrides.get("method", args.method) != args.method:
        raise UserInputError(f"--set method={overrides['method']}: this script trains method={args.method}; "
                             f"use train_{overrides['method']}.py")
    overrides["method"], sources["method"] = args.method, "the entry script"
    if overrides.get("pretrained") and args.resume:
        raise UserInputError("--pretrained and --resume exclude each other (resume restores G already)")
    if overrides.get("pretrained") and args.continue_from:
        raise UserInputError(f"{sources['pretrained']} and --continue_from exclude each other (the continuation "
                             f"restores G from its checkpoint)")
    if args.resume:
        saved = config_from_dict(resumed["config"] or {})
        cfg = saved.with_overrides(overrides, sources)
        check_restored_keys(args.resume, saved, cfg, sources)
        return cfg
    return load_config(preset_name(args.config), overrides, sources)


def check_restored_keys(resume: str, saved: Config, cfg: Config, sources: dict[str, str]) -> None:
    """Refuse a resumed run's change of a key whose state the checkpoint restores (``RESTORED_ON_RESUME``);
    the same value again is fine (the same command with --resume, as a stopped run's message says)."""
    changed = [f"{k}={cfg[k]!r} ({sources.get(k, '--set')}; the run's: {saved[k]!r})"
               for k in RESTORED_ON_RESUME if cfg[k] != saved[k]]
    if changed:
        raise UserInputError(f"--resume {resume}: {'; '.join(changed)} cannot change on resume: a resumed run keeps "
                             f"the batch, optimisers and lr schedule it started with (its epoch position counts "
                             f"batches of that size; the optimisers' state is restored from the checkpoint); drop "
                             f"the change, or start a new run from this one's weights (--model_name NAME --set "
                             f"pretrained={resume})")


def device_flag(args: argparse.Namespace) -> str:
    """The one mapping of the device flags: --device, else the seed-style --use_gpu/--gpu_device, else auto."""
    if args.device:
        return args.device
    if args.use_gpu is not None:
        return f"cuda:{args.gpu_device}" if args.use_gpu else "cpu"
    return "auto"


def plain_name(name: str) -> str:
    """``--model_name`` must name a folder inside ``--save_root``: no path separators, no '.' or '..'."""
    if not name or name in (".", "..") or os.sep in name or (os.altsep and os.altsep in name):
        raise UserInputError(f"--model_name: '{name}' must be a plain folder name (no '/', not '.' or '..'); "
                             f"use --save_root for the parent folder")
    return name


def run_spec(args: argparse.Namespace, resumed: dict | None) -> RunSpec:
    """The non-config part of a run from the parsed flags (on --resume and --continue_from, unset data flags
    from the checkpoint's ``resumed``: ``resumed_settings``)."""
    saved = resumed or {}
    data = saved.get("data") or {}
    dataset = args.dataset or saved.get("dataset") or "synthetic"
    if args.resume and os.path.isdir(args.resume):
        run_dir = args.resume
    elif args.resume and args.model_name is None:
        run_dir = os.path.dirname(os.path.abspath(args.resume))  # continue beside the checkpoint
    else:
        run_dir = os.path.join(args.save_root, plain_name(args.model_name if args.model_name is not None else "run"))

    def pick(flag: str, default=None):
        value = getattr(args, flag)
        return value if value is not None else data.get(flag, default)

    for flag in ("max_train_samples", "max_val_samples"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UserInputError(f"--{flag}: must be at least 1, got {getattr(args, flag)}")
    val_split = pick("val_split") if dataset == saved.get("dataset") else args.val_split
    return RunSpec(
        dataset=dataset, path=pick("path"), train_split=pick("train_split", "train") or "train",
        val_split=val_split or DEFAULT_VAL_SPLIT.get(dataset, "val"), run_dir=run_dir, device=device_flag(args),
        resume=args.resume, continue_from=args.continue_from, overwrite=args.overwrite,
        trust_checkpoint=args.trust_checkpoint,
        max_train_samples=pick("max_train_samples"), max_val_samples=pick("max_val_samples"),
        skip_nonfinite=args.skip_nonfinite, skip_bad_images=args.skip_bad_images, tensorboard=args.tensorboard,
    )
