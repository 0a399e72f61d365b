"""Building a run's networks and optimisers from explicit arguments: the trainer and the benchmark both call these.

config -> networks (G; P and C for adversarial runs) -> device, channels_last, DDP, compile -> optimisers
(G's from the config, P's and C's the paper's RMSprop) -> step-schedules -> the step context (precision, one
loss scaler per optimiser).
"""

from __future__ import annotations

import torch

from config import Config
from datasets.skeleton import JointSpec
from models import build_generator, confidence_discriminator, pose_discriminator
from runtime.device import place_module
from runtime.distributed import DistInfo
from training.steps import AdversarialParams, ErrorLoss, Nets, StepContext
from utils.errors import UserInputError


def generator_args(cfg: Config, num_joints: int) -> dict:
    """Generator constructor arguments from the config (saved in checkpoints)."""
    return {"num_joints": num_joints, "num_stacks": cfg.num_stacks, "channels": cfg.channels, "depth": cfg.depth,
            "num_blocks": cfg.num_blocks, "predict_occlusion": cfg.predict_occlusion}


def build_nets(cfg: Config, num_joints: int) -> tuple[Nets, dict]:
    """G (and P, C as ``method`` / ``use_pose_disc`` / ``use_conf_disc`` ask) plus the arguments to rebuild them."""
    args = {"generator": generator_args(cfg, num_joints)}
    nets = Nets(build_generator(args["generator"]))
    if cfg.method == "adversarial":
        disc = {"num_joints": num_joints, "use_occlusion": cfg.predict_occlusion,
                "channels": cfg.disc_channels, "depth": cfg.disc_depth}
        if cfg.use_pose_disc:
            nets.pose_disc, args["pose_disc"] = pose_discriminator(**disc), disc
        if cfg.use_conf_disc:
            nets.conf_disc, args["conf_disc"] = confidence_discriminator(**disc), disc
    return nets, args


def check_sync_bn(sync_bn: bool, distributed: bool, device: torch.device) -> None:
    """Refuse ``sync_bn`` where it cannot run: a DDP run on the CPU."""
    if sync_bn and distributed and device.type != "cuda":
        raise UserInputError("sync_bn=True: PyTorch's SyncBatchNorm has no CPU kernels; "
                             "drop it for --device cpu (gloo) runs")


def place_nets(nets: Nets, device: torch.device, channels_last: bool, compile_: bool,
               dist: DistInfo | None = None, sync_bn: bool = False) -> Nets:
    """Every network on ``device`` (NHWC when ``channels_last``), wrapped in DDP when distributed, then compiled."""
    distributed = dist is not None and dist.distributed
    check_sync_bn(sync_bn, distributed, device)
    for name, net in nets.named().items():
        net = place_module(net, device, channels_last)
        if distributed:
            if sync_bn:
                net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
            ids = [device.index] if device.type == "cuda" else None
            net = torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)
        if compile_:
            net = torch.compile(net)
        setattr(nets, name, net)
    return nets


def build_optimizer(name: str, params, lr: float, momentum: float, weight_decay: float,
                    device: torch.device, fast: bool = True) -> torch.optim.Optimizer:
    """RMSprop (the paper's), Adam or SGD; ``fast``: fused/foreach kernels where the device has them, else
    PyTorch's default kernels (the benchmark's "plain" runs)."""
    kernels = ({"fused": True} if device.type == "cuda" else {"foreach": True}) if fast else {}
    if name == "RMSprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                                   **({"foreach": True} if fast else {}))
    if name == "Adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **kernels)
    if name == "SGD":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **kernels)
    raise UserInputError(f"--optimizer_type: unknown optimizer '{name}'; valid: RMSprop, Adam, SGD")


def batch_lr_scale(optimizer: str, base_batch: int, global_batch: int) -> float:
    """The factor for a learning rate set for a global batch of ``base_batch`` (0: set for no batch in
    particular, factor 1) when the global batch is ``global_batch``: the square root of the ratio for RMSprop
    and Adam, the ratio itself for SGD.

    Linear scaling keeps SGD's expected update per sample when the batch grows (Goyal et al. 2017, "Accurate,
    Large Minibatch SGD", arXiv:1706.02677). RMSprop and Adam divide each update by a running gradient scale,
    and for them the square-root rule is the one that keeps the training dynamics (Malladi et al. 2022, "On
    the SDEs and Scaling Rules for Adaptive Gradient Algorithms", NeurIPS; the rule Krizhevsky 2014, "One
    weird trick", arXiv:1404.5997, argued from the gradient noise)."""
    if base_batch <= 0:
        return 1.0
    ratio = global_batch / base_batch
    return ratio if optimizer == "SGD" else ratio ** 0.5


def optimizer_lr(cfg: Config, name: str, global_batch: int) -> float:
    """The starting learning rate of optimiser ``name`` ("generator": ``lr`` for ``optimizer``; a discriminator:
    ``disc_lr`` for RMSprop, the paper's recipe) scaled from ``lr_base_batch`` to ``global_batch``."""
    if name == "generator":
        return cfg.lr * batch_lr_scale(cfg.optimizer, cfg.lr_base_batch, global_batch)
    return cfg.disc_lr * batch_lr_scale("RMSprop", cfg.lr_base_batch, global_batch)


def lr_scaling_note(cfg: Config, global_batch: int) -> str | None:
    """The line naming the learning rates a run uses when ``lr_base_batch`` scales them, else None."""
    if cfg.lr_base_batch <= 0:
        return None
    rule = "x" if cfg.optimizer == "SGD" else "x sqrt"
    return (f"lr {optimizer_lr(cfg, 'generator', global_batch):.3g} for a global "
            f"batch of {global_batch} (lr={cfg.lr:g} is set for lr_base_batch={cfg.lr_base_batch}, "
            f"{rule}({global_batch}/{cfg.lr_base_batch}) for {cfg.optimizer})")


def build_optimizers(nets: Nets, cfg: Config, device: torch.device, global_batch: int | None = None,
                     fast: bool = True) -> dict[str, torch.optim.Optimizer]:
    """G's optimiser from the config; P and C get the paper's RMSprop at ``disc_lr`` (the same recipe as G).
    Both learning rates are scaled from ``lr_base_batch`` to ``global_batch`` (default: ``batch_size``, one
    process) by ``optimizer_lr``. ``fast``: as ``build_optimizer``."""
    batch = global_batch or cfg.batch_size
    out = {"generator": build_optimizer(cfg.optimizer, nets.generator.parameters(),
                                        optimizer_lr(cfg, "generator", batch), cfg.momentum, cfg.weight_decay,
                                        device, fast)}
    for name in ("pose_disc", "conf_disc"):
        net = getattr(nets, name)
        if net is not None:
            out[name] = build_optimizer("RMSprop", net.parameters(), optimizer_lr(cfg, name, batch), 0.0, 0.0,
                                        device, fast)
    return out


def rescale_batch_lr(optims: dict[str, torch.optim.Optimizer], schedulers: dict, cfg: Config, saved_batch: int,
                     global_batch: int) -> str | None:
    """Move the learning rates a checkpoint restored, scaled by ``lr_base_batch`` for a global batch of
    ``saved_batch``, to what ``global_batch`` gives (a run resumed on another number of processes), with the
    schedules' base rates, so that the milestones still multiply the right rate. The line saying so, or None when
    nothing changes."""
    if cfg.lr_base_batch <= 0 or saved_batch == global_batch:
        return None
    for name, optim in optims.items():
        factor = optimizer_lr(cfg, name, global_batch) / optimizer_lr(cfg, name, saved_batch)
        for group in optim.param_groups:
            group["lr"] *= factor
            if "initial_lr" in group:
                group["initial_lr"] *= factor
        if name in schedulers:
            schedulers[name].base_lrs = [lr * factor for lr in schedulers[name].base_lrs]
            schedulers[name]._last_lr = [group["lr"] for group in optim.param_groups]
    lr = optims["generator"].param_groups[0]["lr"]
    return (f"note: checkpoint of a global batch of {saved_batch} resumed at {global_batch}: learning rates "
            f"rescaled by lr_base_batch={cfg.lr_base_batch}'s rule (G's now {lr:.3g})")


def build_schedulers(optims: dict[str, torch.optim.Optimizer], cfg: Config) -> dict:
    """One step-schedule per optimiser: lr x ``lr_gamma`` at each of ``lr_milestones`` (epochs)."""
    return {k: torch.optim.lr_scheduler.MultiStepLR(o, list(cfg.lr_milestones), cfg.lr_gamma)
            for k, o in optims.items()}


def build_step_context(device: torch.device, dtype: torch.dtype | None, optims: dict[str, torch.optim.Optimizer],
                       grad_clip: float, channels_last: bool) -> StepContext:
    """What every update needs: ``dtype`` (autocast; None = fp32) and one loss scaler per optimiser, enabled
    for fp16 only.

    One scaler per optimiser: G, P and C each take their own backward and scaler.step/update at a different
    point of Algorithm 1, and their losses (G's MSE, P's and C's BCE) differ in gradient size by orders of
    magnitude: one shared scale would be set by whichever overflows first (an inf in P's backward would halve
    the scale of G's next update too) and a shared update() per optimiser step would count one iteration
    several times. Each scaler finds its own scale, and a checkpoint stores each."""
    scalers = {k: torch.amp.GradScaler(device.type, enabled=dtype == torch.float16) for k in optims}
    return StepContext(device, dtype, scalers, grad_clip, channels_last)


def error_loss_params(cfg: Config) -> ErrorLoss:
    """G's error-loss settings from the config."""
    return ErrorLoss(fg_weight=cfg.heatmap_fg_weight, scale=cfg.mse_scale)


def resolve_for_dataset(cfg: Config, spec: JointSpec) -> Config:
    """``cfg`` with the keys that follow the dataset's metric filled in: ``delta`` None (P's fake-target
    threshold, in reference lengths) becomes the metric's own threshold ``spec.alpha`` (0.5 for MPII's PCKh,
    0.2 for LSP's PCK); a value that is set stays."""
    return cfg.with_overrides({"delta": spec.alpha}) if cfg.delta is None else cfg


def adversarial_params(cfg: Config) -> AdversarialParams | None:
    """Algorithm 1's constants from a config resolved for its dataset (``resolve_for_dataset``); None for
    supervised runs."""
    if cfg.method != "adversarial":
        return None
    if cfg.delta is None:
        raise ValueError("delta=None: resolve the config for its dataset first (training.build.resolve_for_dataset)")
    return AdversarialParams(alpha=cfg.alpha, beta=cfg.beta, delta=cfg.delta, epsilon=cfg.epsilon,
                             input_res=cfg.input_res, g_error_step=cfg.g_error_step, adv_stacks=cfg.adv_stacks,
                             g_adv_form=cfg.g_adv_form, gen_iters=cfg.gen_iters, disc_iters=cfg.disc_iters)
