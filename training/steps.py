"""One optimisation step of each method. Losses stay on the device: nothing here syncs with the host.

Adversarial PoseNet's iteration (Algorithm 1 of Chen et al. 2017):
    forward G -> P on fake, P on real -> C on fake, C on real -> G by Eq. 4
    L_G = MSE(pose + occlusion, all stacks) + alpha * L_C + beta * L_P
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models import conf_disc_input, pose_disc_input
from training.losses import confidence_fake_targets, heatmap_mse, masked_bce, pose_fake_targets
from training.runtime import autocast
from utils.heatmaps import decode_heatmaps_torch


@dataclass
class Nets:
    """The networks of a run; P and C are None in supervised runs and in ablations without them."""

    generator: nn.Module
    pose_disc: nn.Module | None = None
    conf_disc: nn.Module | None = None


@dataclass
class StepContext:
    """What a step needs besides the batch."""

    device: torch.device
    dtype: torch.dtype | None  # autocast dtype, None = fp32
    scaler: torch.amp.GradScaler  # active only for fp16
    grad_clip: float
    channels_last: bool
    skip_nonfinite: bool = False  # check each loss on the host and skip updates with NaN/inf (one sync each)
    fg_weight: float = 0.0  # heatmap_fg_weight of the config (0 = the paper's plain MSE)
    skipped_updates: int = 0


def _unwrap(module: nn.Module) -> nn.Module:
    return getattr(module, "module", module)  # DDP keeps the model in .module


def _update(loss: torch.Tensor, params, optimizer: torch.optim.Optimizer, ctx: StepContext) -> None:
    optimizer.zero_grad(set_to_none=True)
    if ctx.skip_nonfinite and not torch.isfinite(loss).item():
        ctx.skipped_updates += 1
        return
    ctx.scaler.scale(loss).backward()
    if ctx.grad_clip > 0:
        ctx.scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, ctx.grad_clip)
    ctx.scaler.step(optimizer)
    ctx.scaler.update()


def to_device(batch: dict, ctx: StepContext) -> dict:
    """Move the tensors a step uses; images to channels_last when asked."""
    out = {k: batch[k].to(ctx.device, non_blocking=True) for k in ("image", "heatmaps", "occlusion", "annotated")}
    if ctx.channels_last:
        out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
    for k in ("joints", "affine", "ref_length"):
        out[k] = batch[k].to(ctx.device, non_blocking=True)
    return out


def generator_mse(out: dict, b: dict, fg_weight: float = 0.0) -> torch.Tensor:
    """Intermediate supervision on every stack: pose heatmaps, plus occlusion heatmaps when predicted."""
    loss = heatmap_mse(out["pose"], b["heatmaps"], b["annotated"], fg_weight)
    if out["occlusion"] is not None:
        loss = loss + heatmap_mse(out["occlusion"], b["occlusion"], b["annotated"], fg_weight)
    return loss


def supervised_step(nets: Nets, opt_g: torch.optim.Optimizer, b: dict, ctx: StepContext) -> dict[str, torch.Tensor]:
    """Plain stacked-hourglass training: G minimises the heatmap MSE."""
    with autocast(ctx.device, ctx.dtype):
        out = nets.generator(b["image"])
    loss = generator_mse(out, b, ctx.fg_weight)
    _update(loss, nets.generator.parameters(), opt_g, ctx)
    return {"loss_mse": loss.detach()}


def reference_in_heatmap_px(b: dict, input_res: int, output_res: int) -> torch.Tensor:
    """The metric's reference length (original px) in heatmap px of this crop: times the affine's scale."""
    a = b["affine"][:, :, :2].double()
    det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]  # 2x2 in closed form: no batched LU on the device
    scale = torch.sqrt(torch.abs(det))
    return (b["ref_length"].double() * scale * output_res / input_res).float()


def adversarial_targets(fake_pose: torch.Tensor, b: dict, delta: float, epsilon: float,
                        input_res: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(p_fake, c_fake, p_mask): per-joint fake targets; p_mask also drops samples without a reference length."""
    out_res = fake_pose.shape[-1]
    pred_xy, _ = decode_heatmaps_torch(fake_pose)
    gt_xy = (b["joints"].double() + 0.5) * out_res / input_res - 0.5  # input px -> heatmap px
    ref = reference_in_heatmap_px(b, input_res, out_res)
    scored = torch.isfinite(ref) & (ref > 0)
    p_fake = pose_fake_targets(pred_xy.float(), gt_xy.float(), torch.nan_to_num(ref), delta)
    c_fake = confidence_fake_targets(fake_pose, b["heatmaps"], epsilon)
    return p_fake, c_fake, b["annotated"] * scored[:, None].float()


def _disc_update(disc: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, target, mask: torch.Tensor,
                 ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
    with autocast(ctx.device, ctx.dtype):
        logits = disc(x, logits=True)
    loss = masked_bce(logits, target, mask)
    _update(loss, disc.parameters(), opt, ctx)
    return loss.detach(), torch.sigmoid(logits.detach().float()).mean()


def adversarial_step(nets: Nets, opts: dict[str, torch.optim.Optimizer], b: dict, ctx: StepContext,
                     cfg, gen_iters: int, disc_iters: int) -> dict[str, torch.Tensor]:
    """One iteration of Algorithm 1; returns detached per-term statistics."""
    g, P, C = nets.generator, nets.pose_disc, nets.conf_disc
    stats: dict[str, torch.Tensor] = {}

    # 1. Forward G: its last-stack outputs are the "fake" samples of both discriminators.
    with autocast(ctx.device, ctx.dtype):
        out = g(b["image"])
    fake_pose = out["pose"][-1].detach().float()
    fake_occ = out["occlusion"][-1].detach().float() if out["occlusion"] is not None else None
    real_occ = b["occlusion"] if fake_occ is not None else None
    p_fake, c_fake, p_mask = adversarial_targets(fake_pose, b, cfg["delta"], cfg["epsilon"], cfg["input_res"])
    mask = b["annotated"]

    # 2. Pose discriminator: fake (targets p_fake), then real (target 1).
    if P is not None:
        for _ in range(disc_iters):
            stats["L_P_fake"], stats["P_fake"] = _disc_update(
                P, opts["pose_disc"], pose_disc_input(b["image"], fake_pose, fake_occ), p_fake, p_mask, ctx)
            stats["L_P_real"], stats["P_real"] = _disc_update(
                P, opts["pose_disc"], pose_disc_input(b["image"], b["heatmaps"], real_occ), 1.0, mask, ctx)
        stats["p_fake_ones"] = (p_fake * p_mask).sum() / p_mask.sum().clamp_min(1)

    # 3. Confidence discriminator: fake (targets c_fake), then real (target 1).
    if C is not None:
        for _ in range(disc_iters):
            stats["L_C_fake"], stats["C_fake"] = _disc_update(
                C, opts["conf_disc"], conf_disc_input(fake_pose, fake_occ), c_fake, mask, ctx)
            stats["L_C_real"], stats["C_real"] = _disc_update(
                C, opts["conf_disc"], conf_disc_input(b["heatmaps"], real_occ), 1.0, mask, ctx)
        stats["c_fake_ones"] = (c_fake * mask).sum() / mask.sum().clamp_min(1)

    # 4. Generator by Eq. 4: MSE plus the terms that push P and C toward 1 on G's outputs.
    # P and C are frozen (and used unwrapped from DDP) so G's step leaves them untouched.
    frozen = [m for m in (P, C) if m is not None]
    for m in frozen:
        _unwrap(m).requires_grad_(False)
    for it in range(gen_iters):
        if it > 0:
            with autocast(ctx.device, ctx.dtype):
                out = g(b["image"])
        loss_mse = generator_mse(out, b, ctx.fg_weight)
        loss = loss_mse
        pose, occ = out["pose"][-1], out["occlusion"][-1] if out["occlusion"] is not None else None
        with autocast(ctx.device, ctx.dtype):
            if C is not None:
                stats["L_C_gen"] = masked_bce(_unwrap(C)(conf_disc_input(pose, occ), logits=True), 1.0, mask)
                loss = loss + cfg["alpha"] * stats["L_C_gen"]
            if P is not None:
                logits = _unwrap(P)(pose_disc_input(b["image"], pose, occ), logits=True)
                stats["L_P_gen"] = masked_bce(logits, 1.0, mask)
                loss = loss + cfg["beta"] * stats["L_P_gen"]
        _update(loss, g.parameters(), opts["generator"], ctx)
    for m in frozen:
        _unwrap(m).requires_grad_(True)
    stats["loss_mse"] = loss_mse.detach()
    stats["loss_G"] = loss.detach()
    return {k: v.detach() for k, v in stats.items()}
