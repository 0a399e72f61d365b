"""The training loop both entry scripts share: build -> (resume) -> epochs of steps -> validate -> save.

Checkpoints (``run_dir/last.pt`` every epoch and every ``checkpoint_every`` iterations, ``best.pt`` on
a new best validation mean, ``epoch_<N>.pt`` after each of ``snapshot_epochs``) hold everything needed to
continue bit-exactly: networks, optimisers, schedulers, AMP scaler, RNG states, position in the epoch,
partial epoch statistics, config.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from config import Config
from datasets import build_dataset
from models import build_generator, confidence_discriminator, count_parameters, pose_discriminator
from training.checkpoint import (
    FORMAT_VERSION,
    git_revision,
    load_checkpoint,
    remove_stale_temp_files,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from training.data import make_train_loader
from training.evaluation import make_eval_loader, validate
from training.runlog import RunLog
from training.runtime import (
    DistInfo,
    autocast_dtype,
    build_optimizer,
    cleanup_distributed,
    init_distributed,
    precision_note,
    seed_everything,
    tune_malloc,
)
from training.steps import Nets, StepContext, adversarial_step, supervised_step, to_device
from utils.errors import UserInputError
from utils.io import ensure_writable_dir


class NonFiniteLoss(UserInputError):
    """A loss term became NaN/inf; the message names the iteration and the term."""


@dataclass
class RunSpec:
    """Everything a run needs that is not a config value (paths, switches of the entry script)."""

    method: str  # "supervised" | "adversarial"
    dataset: str
    path: str | None
    train_split: str
    val_split: str
    run_dir: str
    device: str = "auto"
    resume: str | None = None
    pretrained: str | None = None
    use_pose_disc: bool = True
    use_conf_disc: bool = True
    max_train_samples: int | None = None
    max_val_samples: int | None = None
    skip_nonfinite: bool = False
    skip_bad_images: bool = False
    tensorboard: bool = False
    stop_after_iterations: int | None = None  # testing hook: return early as if pre-empted


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


def model_args(cfg: Config, num_joints: int) -> dict:
    """Generator constructor arguments from the config (saved in checkpoints)."""
    return {"num_joints": num_joints, "num_stacks": cfg.num_stacks, "channels": cfg.channels, "depth": cfg.depth,
            "num_blocks": cfg.num_blocks, "predict_occlusion": cfg.predict_occlusion}


def build_nets(cfg: Config, num_joints: int, spec: RunSpec) -> tuple[Nets, dict]:
    """G (and P, C for adversarial runs) plus the arguments needed to rebuild them."""
    args = {"generator": model_args(cfg, num_joints)}
    nets = Nets(build_generator(args["generator"]))
    if spec.method == "adversarial":
        disc = {"num_joints": num_joints, "use_occlusion": cfg.predict_occlusion,
                "channels": cfg.disc_channels, "depth": cfg.disc_depth}
        if spec.use_pose_disc:
            nets.pose_disc, args["pose_disc"] = pose_discriminator(**disc), disc
        if spec.use_conf_disc:
            nets.conf_disc, args["conf_disc"] = confidence_discriminator(**disc), disc
    return nets, args


def _named_nets(nets: Nets) -> dict[str, torch.nn.Module]:
    return {k: v for k, v in (("generator", nets.generator), ("pose_disc", nets.pose_disc),
                              ("conf_disc", nets.conf_disc)) if v is not None}


def _raw(module: torch.nn.Module) -> torch.nn.Module:
    module = getattr(module, "_orig_mod", module)  # torch.compile wrapper
    return getattr(module, "module", module)  # DDP wrapper


def load_pretrained_generator(generator: torch.nn.Module, path: str) -> list[str]:
    """Initialise G from a checkpoint (e.g. a supervised run); returns occlusion keys it had to leave fresh."""
    ckpt = load_checkpoint(path)
    state, own = ckpt["generator"], generator.state_dict()
    mismatch = [k for k in state if k in own and state[k].shape != own[k].shape]
    if mismatch or any(k not in own for k in state if "occlusion" not in k):
        raise UserInputError(f"--pretrained {path}: architecture differs from this run's generator "
                             f"(checkpoint {ckpt['model_args']})")
    missing = [k for k in own if k not in state]
    if any("occlusion" not in k for k in missing):
        raise UserInputError(f"--pretrained {path}: checkpoint lacks generator weights {missing[:3]}")
    generator.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return missing


def _check_resume_compatible(ckpt: dict, args: dict, spec: RunSpec, path: str) -> None:
    if ckpt.get("method") != spec.method:
        raise UserInputError(f"--resume {path}: checkpoint is from a {ckpt.get('method')} run, not {spec.method}")
    if ckpt.get("dataset", spec.dataset) != spec.dataset:
        raise UserInputError(f"--resume {path}: checkpoint was trained on '{ckpt['dataset']}', not '{spec.dataset}' "
                             f"(drop --dataset to continue on '{ckpt['dataset']}')")
    saved = ckpt.get("net_args", {})
    for name in sorted(set(args) | set(saved)):
        if saved.get(name) != args.get(name):
            raise UserInputError(f"--resume {path}: {name} architecture {saved.get(name)} "
                                 f"differs from this run's {args.get(name)}")


def _epoch_record(state: TrainState, steps: int, images: int, lr: float, val: dict | None) -> dict:
    rec = {"kind": "epoch", "epoch": state.epoch, "iterations": state.iteration, "lr": lr,
           "images_per_s": images / max(state.seconds, 1e-9), "seconds": state.seconds}
    rec.update({k: v / max(state.summed_steps, 1) for k, v in state.sums.items()})
    rec["skipped_batches"], rec["skipped_images"] = state.skipped_batches, state.skipped_images
    if val is not None:
        rec.update({"val_mean": val["mean"], "val_metric": val["metric"], "val_per_joint": val["per_joint"]})
    return rec


class Trainer:
    """Holds the objects of one run; ``fit`` runs it to the end (or to a pre-emption)."""

    def __init__(self, cfg: Config, spec: RunSpec):
        tune_malloc()  # glibc: reuse freed activation buffers instead of fresh pages each step (CPU)
        self.dist, self.device = init_distributed(spec.device)
        self.spec, self.cfg = spec, cfg
        if self.dist.is_main:
            ensure_writable_dir(spec.run_dir, "run directory (--save_root/--modelName)")
        seed_everything(cfg.seed + self.dist.rank, cfg.deterministic)
        self.train_set = build_dataset(spec.dataset, spec.path, spec.train_split, cfg, train=True)
        self.val_set = build_dataset(spec.dataset, spec.path, spec.val_split, cfg, train=False)
        self.nets, self.net_args = build_nets(cfg, self.train_set.spec.num_joints, spec)
        self.state = TrainState()
        self.log = RunLog(spec.run_dir, self.dist.is_main, spec.tensorboard)
        self._place_and_wrap()
        self.optims = self._build_optimizers()
        self.schedulers = {k: torch.optim.lr_scheduler.MultiStepLR(o, list(cfg.lr_milestones), cfg.lr_gamma)
                           for k, o in self.optims.items()}
        dtype = autocast_dtype(cfg.amp, self.device)
        note = precision_note(dtype, self.device)
        if note:
            self._say(note)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=dtype == torch.float16)
        self.ctx = StepContext(self.device, dtype, self.scaler, cfg.grad_clip, cfg.channels_last, spec.skip_nonfinite,
                               cfg.heatmap_fg_weight)
        if self.dist.is_main:
            remove_stale_temp_files(spec.run_dir)  # left by a checkpoint write that was killed
        if spec.resume:
            self._resume(spec.resume)
        else:
            self.log.truncate_after(0)  # a fresh run in an old directory: the old log no longer applies
        if not spec.resume and spec.pretrained:
            fresh = load_pretrained_generator(_raw(self.nets.generator), spec.pretrained)
            self._say(f"initialised G from {spec.pretrained}" + (f" ({len(fresh)} occlusion tensors fresh)"
                                                                  if fresh else ""))
        self.train_loader, self.sampler = make_train_loader(self.train_set, cfg, self.dist, spec)
        self.val_loader = make_eval_loader(self.val_set, cfg.batch_size, cfg.workers, self.dist, spec.max_val_samples)

    def _say(self, msg: str) -> None:
        if self.dist.is_main:
            tqdm.write(msg)

    def _place_and_wrap(self) -> None:
        if self.cfg.sync_bn and self.dist.world_size > 1 and self.device.type != "cuda":
            raise UserInputError("sync_bn=True: PyTorch's SyncBatchNorm has no CPU kernels; "
                                 "drop it for --device cpu (gloo) runs")
        for name, net in _named_nets(self.nets).items():
            net = net.to(self.device)
            if self.cfg.channels_last:
                net = net.to(memory_format=torch.channels_last)
            if self.dist.world_size > 1:
                if self.cfg.sync_bn:
                    net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
                ids = [self.device.index] if self.device.type == "cuda" else None
                net = torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)
            if self.cfg.compile:
                net = torch.compile(net)
            setattr(self.nets, name, net)

    def _build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.cfg
        out = {"generator": build_optimizer(c.optimizer, self.nets.generator.parameters(), c.lr, c.momentum,
                                            c.weight_decay, self.device)}
        for name in ("pose_disc", "conf_disc"):
            net = getattr(self.nets, name)
            if net is not None:
                # the paper trains P and C with the same RMSprop recipe as G
                out[name] = build_optimizer("RMSprop", net.parameters(), c.disc_lr, 0.0, 0.0, self.device)
        return out

    # ---- checkpoints -------------------------------------------------------------------------
    def checkpoint(self) -> dict:
        """Self-describing state of the whole run."""
        nets = {k: _raw(v).state_dict() for k, v in _named_nets(self.nets).items()}
        return {
            "format_version": FORMAT_VERSION, "method": self.spec.method, "dataset": self.spec.dataset,
            "data": {k: getattr(self.spec, k) for k in ("path", "train_split", "val_split", "max_train_samples",
                                                       "max_val_samples")},
            "model_args": self.net_args["generator"], "net_args": self.net_args, "config": self.cfg.to_dict(),
            **nets,
            "optimizers": {k: o.state_dict() for k, o in self.optims.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict(), "rng": rng_state(),
            "state": vars(self.state).copy(), "git": git_revision(),
        }

    def _buffers(self) -> list[torch.Tensor]:
        """Every network's buffers (BatchNorm statistics): restored after a skipped batch's forward pass."""
        return [b for net in _named_nets(self.nets).values() for b in _raw(net).buffers()]

    def _check_finite_weights(self) -> None:
        """Refuse to save NaN/inf weights (one sync): the previous checkpoint stays the last good one."""
        for name, net in _named_nets(self.nets).items():
            params = {k: v for k, v in _raw(net).state_dict().items() if v.is_floating_point()}
            if params and not torch.stack([torch.isfinite(p.detach()).all() for p in params.values()]).all():
                tensor = next(k for k, p in params.items() if not torch.isfinite(p.detach()).all())
                raise NonFiniteLoss(f"non-finite {name} weights ({tensor}) after iteration {self.state.iteration} "
                                    f"(epoch {self.state.epoch}); {self._last_good()}")

    def _last_good(self) -> str:
        path = os.path.join(self.spec.run_dir, "last.pt")
        if os.path.isfile(path):
            return f"last good checkpoint kept: {path}"
        return f"no checkpoint saved yet in {self.spec.run_dir}"

    def save(self, name: str) -> None:
        """Atomically write ``run_dir/name`` (main rank only) after checking the weights are finite."""
        self._check_finite_weights()
        if self.dist.is_main:
            save_checkpoint(self.checkpoint(), os.path.join(self.spec.run_dir, name))

    def _resume(self, path: str) -> None:
        ckpt = load_checkpoint(path)
        _check_resume_compatible(ckpt, self.net_args, self.spec, path)
        for name, net in _named_nets(self.nets).items():
            _raw(net).load_state_dict(ckpt[name])
        for k, o in self.optims.items():
            o.load_state_dict(ckpt["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(ckpt["schedulers"][k])
        self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        self.state = TrainState(**ckpt["state"])
        self.log.truncate_after(self.state.epoch)
        self._say(f"resumed {path}: epoch {self.state.epoch}, step {self.state.epoch_step}, "
                  f"iteration {self.state.iteration}")

    # ---- the loop ----------------------------------------------------------------------------
    def _step(self, batch: dict) -> dict[str, torch.Tensor]:
        b = to_device(batch, self.ctx)
        warming_up = self.state.epoch < self.cfg.adversarial_warmup_epochs
        if self.spec.method == "supervised" or warming_up:
            return supervised_step(self.nets, self.optims["generator"], b, self.ctx)
        return adversarial_step(self.nets, self.optims, b, self.ctx, self.cfg, self.cfg.gen_iters,
                                self.cfg.disc_iters)

    def _read_back(self, pending: list[dict[str, torch.Tensor]], first_iteration: int) -> None:
        """Move accumulated device statistics to the host (the only sync point) and check they are finite."""
        if not pending:
            return
        keys = sorted({k for s in pending for k in s})
        table = torch.stack([torch.stack([s.get(k, torch.zeros((), device=self.device)).float() for k in keys])
                             for s in pending]).cpu()  # (steps, terms)
        bad = ~torch.isfinite(table)
        if bad.any():
            step, term = (int(i) for i in bad.nonzero()[0])
            raise NonFiniteLoss(f"non-finite {keys[term]} at iteration {first_iteration + step} "
                                f"(epoch {self.state.epoch}); {self._last_good()}; "
                                f"lower the lr or pass --skip_nonfinite to skip such batches")
        for k, col in zip(keys, table.sum(0).tolist(), strict=True):
            self.state.sums[k] = self.state.sums.get(k, 0.0) + col
        self.state.summed_steps += len(pending)
        pending.clear()

    def train_epoch(self) -> tuple[int, int]:
        """Run the rest of the current epoch; returns (steps, images) of the whole epoch."""
        st, cfg = self.state, self.cfg
        self.sampler.set_epoch(st.epoch, start=st.epoch_step * cfg.batch_size)
        for net in _named_nets(self.nets).values():
            net.train()
        pending: list[dict[str, torch.Tensor]] = []
        first = st.iteration
        start = time.perf_counter()
        bar = tqdm(self.train_loader, desc=f"epoch {st.epoch}", disable=not self.dist.is_main, leave=False,
                   initial=st.epoch_step, total=st.epoch_step + len(self.train_loader))
        for batch in bar:
            st.skipped_images += int(batch.pop("skipped", 0))  # only with --skip_bad_images
            if "image" not in batch:  # every image of the batch was unreadable: nothing to train on
                st.epoch_step += 1  # still a position in the epoch (mid-epoch resume skips it)
                continue
            skipped_before = self.ctx.skipped_updates
            saved = [b.clone() for b in self._buffers()] if self.spec.skip_nonfinite else []
            stats = self._step(batch)
            if self.ctx.skipped_updates > skipped_before:  # only with --skip_nonfinite
                st.skipped_batches += 1
                for b, old in zip(self._buffers(), saved, strict=True):  # undo BatchNorm's NaN statistics
                    b.copy_(old)
            else:
                pending.append(stats)
            st.iteration += 1
            st.epoch_step += 1
            save_now = cfg.checkpoint_every > 0 and st.iteration % cfg.checkpoint_every == 0
            if st.iteration % cfg.print_every == 0 or save_now:
                self._read_back(pending, first)
                first = st.iteration
                bar.set_postfix({k: f"{v / max(st.summed_steps, 1):.4g}" for k, v in st.sums.items()
                                 if k.startswith("loss")})
                if save_now:
                    st.seconds += time.perf_counter() - start
                    start = time.perf_counter()
                    self.save("last.pt")
            if self.spec.stop_after_iterations and st.iteration >= self.spec.stop_after_iterations:
                raise _Preempted
        self._read_back(pending, first)
        st.seconds += time.perf_counter() - start
        return st.epoch_step, st.epoch_step * cfg.batch_size * self.dist.world_size

    def fit(self) -> dict | None:
        """Train until ``epochs``; returns the final validation result (None when pre-empted by the test hook)."""
        cfg, st = self.cfg, self.state
        self._say(f"{self.spec.method} | {self.spec.dataset} | G {count_parameters(self.nets.generator):,} params | "
                  f"device {self.device} | {len(self.train_set)} train / {len(self.val_set)} val images")
        val = None
        try:
            while st.epoch < cfg.epochs:
                steps, images = self.train_epoch()
                val = validate(self.nets.generator, self.val_loader, self.val_set, cfg, self.device, self.dist)
                lr = self.optims["generator"].param_groups[0]["lr"]
                self.log.write(_epoch_record(st, steps, images, lr, val))
                skipped = [f"{n} {what}" for n, what in ((st.skipped_batches, "non-finite batches"),
                                                         (st.skipped_images, "unreadable images")) if n]
                self._say(f"epoch {st.epoch}: "
                          + ", ".join(f"{k} {v / max(st.summed_steps, 1):.4g}" for k, v in st.sums.items())
                          + f" | val {val['metric']} {val['mean']:.2f}"
                          + (f" | skipped {', '.join(skipped)}" if skipped else ""))
                for s in self.schedulers.values():
                    s.step()
                improved = val["mean"] > st.best_metric
                st.best_metric = max(st.best_metric, val["mean"])
                st.epoch, st.epoch_step, st.sums, st.summed_steps, st.seconds = st.epoch + 1, 0, {}, 0, 0.0
                st.skipped_batches = st.skipped_images = 0
                if improved:  # best.pt first: a kill between the two writes then repeats this epoch's end
                    self.save("best.pt")
                if st.epoch in cfg.snapshot_epochs:  # st.epoch now counts completed epochs
                    self.save(f"epoch_{st.epoch}.pt")
                self.save("last.pt")
        except _Preempted:
            return None
        finally:
            self._release_workers()
            cleanup_distributed()
        if self.dist.is_main and val is not None:
            self._finish(val)
        return val

    def _release_workers(self) -> None:
        """Stop the persistent DataLoader workers now. Left to the cyclic garbage collector (in-process use,
        tests), torch's shutdown waits ~5 s per worker for a stop signal that arrives late."""
        for loader in (self.train_loader, self.val_loader):
            it = getattr(loader, "_iterator", None)
            if it is not None and hasattr(it, "_shutdown_workers"):
                it._shutdown_workers()
            if it is not None:
                loader._iterator = None

    def _finish(self, val: dict) -> None:
        from utils.visualize import plot_training_curves

        curves = plot_training_curves(self.spec.run_dir)
        self._say(f"done: best val mean {self.state.best_metric:.2f} | {self.spec.run_dir}/best.pt | {curves}")


class _Preempted(Exception):
    """Raised by the testing hook ``stop_after_iterations`` to leave the loop as a kill would."""


def run(cfg: Config, spec: RunSpec) -> dict | None:
    """Build a Trainer and fit it."""
    trainer = Trainer(cfg, spec)
    if trainer.dist.is_main:  # the run directory exists: Trainer checked it is writable
        with open(os.path.join(spec.run_dir, "config.json"), "w") as f:
            json.dump(cfg.to_dict(), f, indent=2)
    return trainer.fit()


__all__ = ["DistInfo", "NonFiniteLoss", "RunSpec", "Trainer", "run"]
