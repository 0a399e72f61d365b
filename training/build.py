"""Building a run's networks and optimisers from explicit arguments: the trainer and the benchmark both call these.

config -> networks (G; P and C for adversarial runs) -> device, channels_last, DDP, compile -> optimisers
(G's from the config, P's and C's the paper's RMSprop) -> step-schedules.
"""

from __future__ import annotations

import torch
from torch import nn

from config import Config
from datasets.skeleton import JointSpec
from models import build_generator, confidence_discriminator, pose_discriminator
from runtime.device import place_module
from runtime.distributed import DistInfo
from training.steps import AdversarialParams, ErrorLoss, Nets
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


def raw_module(module: nn.Module) -> nn.Module:
    """The network inside torch.compile and DDP wrappers (whose state dict a checkpoint stores)."""
    module = getattr(module, "_orig_mod", module)
    return getattr(module, "module", module)


def place_nets(nets: Nets, device: torch.device, channels_last: bool, compile_: bool,
               dist: DistInfo | None = None, sync_bn: bool = False) -> Nets:
    """Every network on ``device`` (NHWC when ``channels_last``), wrapped in DDP when distributed, then compiled."""
    distributed = dist is not None and dist.distributed
    if sync_bn and distributed and device.type != "cuda":
        raise UserInputError("sync_bn=True: PyTorch's SyncBatchNorm has no CPU kernels; "
                             "drop it for --device cpu (gloo) runs")
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
                    device: torch.device) -> torch.optim.Optimizer:
    """RMSprop (the paper's), Adam or SGD; fused/foreach kernels where the device has them."""
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    if name == "RMSprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay, foreach=True)
    if name == "Adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **fast)
    if name == "SGD":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **fast)
    raise UserInputError(f"--optimizer_type: unknown optimizer '{name}'; valid: RMSprop, Adam, SGD")


def build_optimizers(nets: Nets, cfg: Config, device: torch.device) -> dict[str, torch.optim.Optimizer]:
    """G's optimiser from the config; P and C get the paper's RMSprop at ``disc_lr`` (the same recipe as G)."""
    out = {"generator": build_optimizer(cfg.optimizer, nets.generator.parameters(), cfg.lr, cfg.momentum,
                                        cfg.weight_decay, device)}
    for name in ("pose_disc", "conf_disc"):
        net = getattr(nets, name)
        if net is not None:
            out[name] = build_optimizer("RMSprop", net.parameters(), cfg.disc_lr, 0.0, 0.0, device)
    return out


def build_schedulers(optims: dict[str, torch.optim.Optimizer], cfg: Config) -> dict:
    """One step-schedule per optimiser: lr x ``lr_gamma`` at each of ``lr_milestones`` (epochs)."""
    return {k: torch.optim.lr_scheduler.MultiStepLR(o, list(cfg.lr_milestones), cfg.lr_gamma)
            for k, o in optims.items()}


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
