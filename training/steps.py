"""One optimisation step of each network. Losses stay on the device: nothing here syncs with the host
(except a gate's check before an update, ``StepContext.gate``: ``--skip_nonfinite``, training/guard.py).

Adversarial PoseNet's iteration (Algorithm 1 of Chen et al. 2017), ``adversarial_step``:
    1. G by the error loss alone (Eq. 1)                                  ``supervised_step``  (g_error_step)
    2. P on G's outputs (targets p_fake) and on the truth (target 1)      ``pose_disc_step``
    3. C on G's outputs (targets c_fake) and on the truth (target 1)      ``conf_disc_step``
    4. G by Eq. 4: L_MSE + alpha * L_C + beta * L_P                       ``generator_step``
The supervised baseline (Newell et al. 2016) is step 1 alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from datasets.base import expand_batch
from models import conf_disc_input, pose_disc_input
from runtime.device import autocast, place_images
from training.losses import (
    at_least_fp32,
    confidence_fake_targets,
    generator_adversarial_term,
    heatmap_mse,
    masked_bce,
    pose_fake_targets,
)
from utils.geometry import heatmap_stride, input_to_heatmap
from utils.heatmaps import decode_heatmaps_torch


@dataclass
class Nets:
    """The networks of a run; P and C are None in supervised runs and in ablations without them."""

    generator: nn.Module
    pose_disc: nn.Module | None = None
    conf_disc: nn.Module | None = None

    def named(self) -> dict[str, nn.Module]:
        """The networks present, by checkpoint name."""
        return {k: v for k, v in vars(self).items() if v is not None}


def raw_module(module: nn.Module, keep_compile: bool = False) -> nn.Module:
    """The network inside the wrappers ``training.build.place_nets`` put around it: DDP's always (whose state
    dict a checkpoint stores, and whose gradient hooks G's Eq. 4 step must not fire for P and C), torch.compile's
    unless ``keep_compile``. The compile wraps DDP, so under DDP only the plain network is left either way."""
    inner = getattr(module, "_orig_mod", module)
    if isinstance(inner, DistributedDataParallel):
        return inner.module
    return module if keep_compile else inner


@dataclass(frozen=True)
class ErrorLoss:
    """How G's heatmap error (Eq. 1) is weighted and scaled."""

    fg_weight: float  # squared errors weighted by 1 + fg_weight * target (config heatmap_fg_weight)
    scale: str  # "pixel_mean" | "eq1_literal", as heatmap_mse (config mse_scale)


@dataclass(frozen=True)
class AdversarialParams:
    """The constants of Algorithm 1 (Chen et al. 2017, Sec. 2-3)."""

    alpha: float  # weight of C's term in G's Eq. 4 loss
    beta: float  # weight of P's term
    delta: float  # p_fake = 1 where the predicted joint is within delta reference lengths of the truth
    epsilon: float  # c_fake = 1 where the joint's heatmap is within epsilon (L2) of the truth
    input_res: int  # network input side (px): puts joints and reference lengths in heatmap px
    g_error_step: bool = True  # Algorithm 1's step 1
    adv_stacks: str = "last"  # "last" | "all": which stacks' outputs P and C judge in step 4
    g_adv_form: str = "paper"  # "paper" | "nonsaturating": G's adversarial terms (losses.generator_adversarial_term)
    gen_iters: int = 1  # G updates by Eq. 4 per iteration
    disc_iters: int = 1  # P and C updates per iteration


UpdateGate = Callable[[torch.Tensor], bool]  # loss -> whether the update may step with it


@dataclass(frozen=True)
class StepContext:
    """What every update needs besides the batch: device, precision, loss scalers, clipping, layout."""

    device: torch.device
    dtype: torch.dtype | None  # autocast dtype, None = fp32
    scalers: dict[str, torch.amp.GradScaler]  # one per optimiser (active only for fp16)
    grad_clip: float
    channels_last: bool
    gate: UpdateGate | None = None  # asked before each update (training/guard.py); None: every update steps


def _update(loss: torch.Tensor, params, optimizer: torch.optim.Optimizer, name: str, ctx: StepContext) -> bool:
    """Backward and step of one optimiser; returns whether it stepped (``ctx.gate`` may refuse the loss)."""
    optimizer.zero_grad(set_to_none=True)
    if ctx.gate is not None and not ctx.gate(loss):
        return False
    scaler = ctx.scalers[name]
    scaler.scale(loss).backward()
    if ctx.grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, ctx.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return True


def to_device(batch: dict, ctx: StepContext) -> dict:
    """Move the tensors a step uses; images to channels_last when asked. A compact batch (uint8 crops) is
    expanded on the device first (``expand_batch``: normalised images and target maps)."""
    if batch["image"].dtype == torch.uint8:
        batch = expand_batch(batch, ctx.device)
    out = {k: batch[k].to(ctx.device, non_blocking=True)
           for k in ("heatmaps", "occlusion", "annotated", "joints", "affine", "ref_length")}
    out["image"] = place_images(batch["image"], ctx.device, ctx.channels_last)
    return out


def error_loss(out: dict, b: dict, loss: ErrorLoss) -> torch.Tensor:
    """Eq. 1 with intermediate supervision on every stack: pose heatmaps, plus occlusion heatmaps when predicted."""
    total = heatmap_mse(out["pose"], b["heatmaps"], b["annotated"], loss.fg_weight, loss.scale)
    if out["occlusion"] is not None:
        total = total + heatmap_mse(out["occlusion"], b["occlusion"], b["annotated"], loss.fg_weight, loss.scale)
    return total


def supervised_step(g: nn.Module, opt_g: torch.optim.Optimizer, b: dict, ctx: StepContext,
                    loss: ErrorLoss) -> dict[str, torch.Tensor]:
    """G by the error loss alone: the stacked-hourglass baseline, and step 1 of Algorithm 1."""
    with autocast(ctx.device, ctx.dtype):
        out = g(b["image"])
    value = error_loss(out, b, loss)
    _update(value, g.parameters(), opt_g, "generator", ctx)
    return {"loss_mse": value.detach()}


def reference_in_heatmap_px(b: dict, input_res: int, output_res: int) -> torch.Tensor:
    """The metric's reference length (original px) in heatmap px of this crop: times the affine's scale (input
    px), over the heatmap stride."""
    a = b["affine"][:, :, :2].double()
    det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]  # 2x2 in closed form: no batched LU on the device
    scale = torch.sqrt(torch.abs(det))
    return (b["ref_length"].double() * scale / heatmap_stride(input_res, output_res)).float()


def adversarial_targets(fake_pose: torch.Tensor, b: dict, delta: float, epsilon: float,
                        input_res: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(p_fake, c_fake, p_mask): per-joint fake targets; p_mask also drops samples without a reference length."""
    out_res = fake_pose.shape[-1]
    pred_xy, _ = decode_heatmaps_torch(fake_pose)
    gt_xy = input_to_heatmap(b["joints"].double(), input_res, out_res)
    ref = reference_in_heatmap_px(b, input_res, out_res)
    scored = torch.isfinite(ref) & (ref > 0)
    p_fake = pose_fake_targets(pred_xy.float(), gt_xy.float(), torch.nan_to_num(ref), delta)
    c_fake = confidence_fake_targets(fake_pose, b["heatmaps"], epsilon)
    return p_fake, c_fake, b["annotated"] * scored[:, None].float()


@dataclass
class FakeSamples:
    """G's last-stack outputs, detached: the "fake" inputs of P and C, with their per-joint targets."""

    pose: torch.Tensor  # (B, J, h, w) float32 (float64 when G computes in float64)
    occlusion: torch.Tensor | None
    p_fake: torch.Tensor  # (B, J) 0/1
    c_fake: torch.Tensor  # (B, J) 0/1
    p_mask: torch.Tensor  # (B, J): annotated joints of samples with a reference length


def fake_samples(out: dict, b: dict, adv: AdversarialParams) -> FakeSamples:
    """Detach G's last-stack outputs and compute the paper's per-joint fake targets for them."""
    pose = at_least_fp32(out["pose"][-1].detach())
    occ = at_least_fp32(out["occlusion"][-1].detach()) if out["occlusion"] is not None else None
    p_fake, c_fake, p_mask = adversarial_targets(pose, b, adv.delta, adv.epsilon, adv.input_res)
    return FakeSamples(pose, occ, p_fake, c_fake, p_mask)


def _disc_update(disc: nn.Module, opt: torch.optim.Optimizer, name: str, x: torch.Tensor, target,
                 mask: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
    with autocast(ctx.device, ctx.dtype):
        logits = disc(x, logits=True)
    loss = masked_bce(logits, target, mask)
    _update(loss, disc.parameters(), opt, name, ctx)
    return loss.detach(), torch.sigmoid(logits.detach().float()).mean()


def pose_disc_step(P: nn.Module, opt: torch.optim.Optimizer, b: dict, fake: FakeSamples,
                   ctx: StepContext) -> dict[str, torch.Tensor]:
    """P learns p_fake on G's outputs (with the image), then 1 on the truth."""
    real_occ = b["occlusion"] if fake.occlusion is not None else None
    stats = {}
    stats["L_P_fake"], stats["P_fake"] = _disc_update(
        P, opt, "pose_disc", pose_disc_input(b["image"], fake.pose, fake.occlusion), fake.p_fake, fake.p_mask, ctx)
    stats["L_P_real"], stats["P_real"] = _disc_update(
        P, opt, "pose_disc", pose_disc_input(b["image"], b["heatmaps"], real_occ), 1.0, b["annotated"], ctx)
    stats["p_fake_ones"] = (fake.p_fake * fake.p_mask).sum() / fake.p_mask.sum().clamp_min(1)
    return stats


def conf_disc_step(C: nn.Module, opt: torch.optim.Optimizer, b: dict, fake: FakeSamples,
                   ctx: StepContext) -> dict[str, torch.Tensor]:
    """C learns c_fake on G's outputs (heatmaps only), then 1 on the truth."""
    real_occ = b["occlusion"] if fake.occlusion is not None else None
    mask = b["annotated"]
    stats = {}
    stats["L_C_fake"], stats["C_fake"] = _disc_update(
        C, opt, "conf_disc", conf_disc_input(fake.pose, fake.occlusion), fake.c_fake, mask, ctx)
    stats["L_C_real"], stats["C_real"] = _disc_update(
        C, opt, "conf_disc", conf_disc_input(b["heatmaps"], real_occ), 1.0, mask, ctx)
    stats["c_fake_ones"] = (fake.c_fake * mask).sum() / mask.sum().clamp_min(1)
    return stats


def adversarial_terms(nets: Nets, out: dict, b: dict, adv: AdversarialParams) -> dict[str, torch.Tensor]:
    """G's parts of L_C and L_P in Eq. 4 on G's outputs (``losses.generator_adversarial_term`` in the form
    ``g_adv_form``), for the stacks ``adv_stacks`` names (averaged over them). The paper's form takes each
    stack's own per-joint fake targets (for the last stack, those P and C just learnt). Call under autocast;
    P and C are used unwrapped from DDP (G's step leaves them alone)."""
    stacks = range(len(out["pose"])) if adv.adv_stacks == "all" else [len(out["pose"]) - 1]
    P, C = (raw_module(d, keep_compile=True) if d is not None else None for d in (nets.pose_disc, nets.conf_disc))
    terms = {}
    for s in stacks:
        pose, occ = out["pose"][s], out["occlusion"][s] if out["occlusion"] is not None else None
        c_fake = p_fake = p_mask = None  # unused by the non-saturating form
        if adv.g_adv_form == "paper":
            p_fake, c_fake, p_mask = adversarial_targets(at_least_fp32(pose.detach()), b, adv.delta, adv.epsilon,
                                                         adv.input_res)
        if C is not None:
            logits = C(conf_disc_input(pose, occ), logits=True)
            term = generator_adversarial_term(logits, c_fake, b["annotated"], adv.g_adv_form)
            terms["L_C_gen"] = terms.get("L_C_gen", 0) + term / len(stacks)
        if P is not None:
            logits = P(pose_disc_input(b["image"], pose, occ), logits=True)
            term = generator_adversarial_term(logits, p_fake, b["annotated"] if p_mask is None else p_mask,
                                              adv.g_adv_form)
            terms["L_P_gen"] = terms.get("L_P_gen", 0) + term / len(stacks)
    return terms


def adversarial_grad_ratio(out: dict, mse: torch.Tensor, adversarial: torch.Tensor) -> torch.Tensor:
    """||d adversarial / d last|| / ||d mse / d last||: how hard P and C push G against the error loss.

    ``last`` = G's last-stack outputs of this forward pass: pose (B, J, h, w) and, when predicted, occlusion,
    their gradients taken together as one vector. ``adversarial`` = alpha * L_C + beta * L_P as G's update
    weighs them. Uses ``torch.autograd.grad`` on the graph the update then backpropagates (kept with
    ``retain_graph``): no parameter's ``.grad``, no weight and no BatchNorm statistic changes. Stays on the
    device (no sync). With ``adv_stacks="all"`` the earlier stacks' terms reach this output only through the
    later stacks: the ratio is the push on the prediction that is scored."""
    last = [out["pose"][-1]] + ([out["occlusion"][-1]] if out["occlusion"] is not None else [])

    def norm(loss: torch.Tensor) -> torch.Tensor:
        grads = torch.autograd.grad(loss, last, retain_graph=True, allow_unused=True)
        return torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None))

    return norm(adversarial) / norm(mse).clamp_min(torch.finfo(torch.float32).tiny)


def generator_step(nets: Nets, opt_g: torch.optim.Optimizer, b: dict, out: dict, ctx: StepContext,
                   loss: ErrorLoss, adv: AdversarialParams, measure: bool = False) -> dict[str, torch.Tensor]:
    """G by Eq. 4 on the forward pass ``out``: L_MSE + alpha * L_C + beta * L_P, with P and C frozen.

    ``measure``: also return ``adv_grad_ratio`` (``adversarial_grad_ratio``) and ``adv_grad_measured`` = 1,
    without changing the update."""
    frozen = [raw_module(m, keep_compile=True) for m in (nets.pose_disc, nets.conf_disc) if m is not None]
    for m in frozen:
        m.requires_grad_(False)
    measured = {}
    try:
        mse = error_loss(out, b, loss)
        with autocast(ctx.device, ctx.dtype):
            terms = adversarial_terms(nets, out, b, adv)
        adversarial = adv.alpha * terms.get("L_C_gen", 0.0) + adv.beta * terms.get("L_P_gen", 0.0)
        if measure and torch.is_tensor(adversarial):
            measured = {"adv_grad_ratio": adversarial_grad_ratio(out, mse, adversarial),
                        "adv_grad_measured": torch.ones((), device=mse.device)}
        total = mse + adversarial
        _update(total, nets.generator.parameters(), opt_g, "generator", ctx)
    finally:
        for m in frozen:
            m.requires_grad_(True)
    return {**{k: v.detach() for k, v in terms.items()}, "loss_mse": mse.detach(), "loss_G": total.detach(),
            **measured}


def adversarial_step(nets: Nets, opts: dict[str, torch.optim.Optimizer], b: dict, ctx: StepContext,
                     loss: ErrorLoss, adv: AdversarialParams, measure: bool = False) -> dict[str, torch.Tensor]:
    """One iteration of Algorithm 1; returns detached per-term statistics (with ``measure``, also the
    adversarial/MSE gradient ratio of the first Eq. 4 update)."""
    g, stats = nets.generator, {}
    if adv.g_error_step:  # 1. G by Eq. 1 alone
        stats["loss_mse_step1"] = supervised_step(g, opts["generator"], b, ctx, loss)["loss_mse"]
    with autocast(ctx.device, ctx.dtype):  # G's outputs after step 1: the fake samples of P and C
        out = g(b["image"])
    fake = fake_samples(out, b, adv)
    for _ in range(adv.disc_iters):
        if nets.pose_disc is not None:  # 2. P
            stats.update(pose_disc_step(nets.pose_disc, opts["pose_disc"], b, fake, ctx))
        if nets.conf_disc is not None:  # 3. C
            stats.update(conf_disc_step(nets.conf_disc, opts["conf_disc"], b, fake, ctx))
    for it in range(adv.gen_iters):  # 4. G by Eq. 4
        if it > 0:
            with autocast(ctx.device, ctx.dtype):
                out = g(b["image"])
        stats.update(generator_step(nets, opts["generator"], b, out, ctx, loss, adv, measure and it == 0))
    return stats


def train_step(nets: Nets, opts: dict[str, torch.optim.Optimizer], b: dict, ctx: StepContext, loss: ErrorLoss,
               adv: AdversarialParams | None, measure: bool = False) -> dict[str, torch.Tensor]:
    """The step of a run: Algorithm 1 when ``adv`` is given, else the supervised step. ``measure`` asks
    Algorithm 1 for the gradient ratio of its Eq. 4 update (the supervised step has none)."""
    if adv is None:
        return supervised_step(nets.generator, opts["generator"], b, ctx, loss)
    return adversarial_step(nets, opts, b, ctx, loss, adv, measure)
