"""Losses and the adversarial targets of Adversarial PoseNet (Chen et al. 2017, Sec. 2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """Autocast's bf16/fp16 outputs in fp32, where losses and the discriminators' inputs are computed; fp32
    and fp64 tensors unchanged (the regression tests run whole steps in fp64)."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def heatmap_mse(preds: list[torch.Tensor], target: torch.Tensor, mask: torch.Tensor, fg_weight: float,
                scale: str) -> torch.Tensor:
    """Squared heatmap error summed over stacks (intermediate supervision), over labelled joints only.

    preds: per stack (B, J, H, W); target (B, J, H, W) in [0, 1]; mask (B, J), 1 = joint labelled.
    ``scale`` "pixel_mean": divided by (labelled joints x H x W), i.e. the mean squared error per pixel,
    summed over stacks. "eq1_literal": Eq. 1 of Chen et al. as printed, the squared L2 norm of each image's
    whole heatmap tensor summed over images and stacks and divided by 2 M N (M images, N stacks); the 2 is
    Eq. 1's pose + occlusion pair, kept also for a single-task G so both readings compare at fixed alpha, beta.
    ``fg_weight`` w weights each pixel's squared error by 1 + w * target: w = 0 is the paper's plain MSE; w > 0
    stops the ~99% background pixels from holding a small model at the all-zero prediction for thousands
    of steps.
    """
    m = mask[:, :, None, None].to(target.dtype)
    if fg_weight:
        m = m * (1.0 + fg_weight * target)
    total = sum(((at_least_fp32(p) - target) ** 2 * m).sum() for p in preds)
    if scale == "eq1_literal":
        return total / (2.0 * target.shape[0] * len(preds))
    if scale != "pixel_mean":
        raise ValueError(f"heatmap_mse: unknown scale {scale!r}; valid: pixel_mean, eq1_literal")
    return total / (mask.sum() * target.shape[-1] * target.shape[-2]).clamp_min(1.0)


def joint_distances(pred_xy: torch.Tensor, gt_xy: torch.Tensor) -> torch.Tensor:
    """Euclidean distance per joint, (B, J, 2) x2 -> (B, J)."""
    return torch.linalg.vector_norm(pred_xy - gt_xy, dim=-1)


def pose_fake_targets(
    pred_xy: torch.Tensor, gt_xy: torch.Tensor, ref_length: torch.Tensor, delta: float
) -> torch.Tensor:
    """p_fake: 1 where the predicted joint lies within ``delta`` reference lengths of the truth, else 0.

    pred_xy, gt_xy (B, J, 2) and ref_length (B,) share one frame (heatmap px in training). -> (B, J) float.
    """
    return (joint_distances(pred_xy, gt_xy) < delta * ref_length[:, None]).float()


def confidence_fake_targets(pred_hm: torch.Tensor, gt_hm: torch.Tensor, epsilon: float) -> torch.Tensor:
    """c_fake: 1 where ||y_i - y_hat_i||_2 over joint i's heatmap is below ``epsilon``. (B, J, H, W) -> (B, J)."""
    return (torch.linalg.vector_norm((at_least_fp32(pred_hm) - gt_hm).flatten(2), dim=-1) < epsilon).float()


def masked_bce(logits: torch.Tensor, targets: torch.Tensor | float, mask: torch.Tensor) -> torch.Tensor:
    """Per-joint binary cross-entropy on logits, averaged over joints where ``mask`` is 1. (B, J)."""
    logits = at_least_fp32(logits)
    if torch.is_tensor(targets):
        t = targets.to(logits.device, logits.dtype).expand_as(logits)
    else:  # filled on the device: a Python float copied from the host would be a CUDA sync
        t = torch.full_like(logits, targets)
    loss = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


def generator_adversarial_term(logits: torch.Tensor, fake_targets: torch.Tensor | None, mask: torch.Tensor,
                               form: str) -> torch.Tensor:
    """G's share of one discriminator's term in Eq. 4, from the discriminator's per-joint logits on G's output.

    Eq. 4: argmin_G max_D L_MSE(G) + weight * L_D(G, D) with L_D = E[log D(real)] + E[log(1 - |D(G(x)) - fake|)],
    ``fake`` the per-joint fake targets (p_fake for P, c_fake for C; 1 = "counts as real"). Only the second
    expectation depends on G. logits, fake_targets, mask: (B, J); mask 1 = joint scored; fake_targets may be None
    for the non-saturating form. Returns a scalar that G descends:
    - "paper": log(1 - |D - fake|) averaged over the scored joints. For a 0/1 target this is minus D's own BCE
      against ``fake``, so G ascends D's loss: where fake = 0 it raises D(G(x)) towards "real", where fake = 1
      it lowers it towards "fake" (the min-max game as written; its gradient fades as D gets sure of itself).
    - "nonsaturating": -log D(G(x)) = BCE against "real" on every scored joint (``fake_targets`` unused): G
      raises D(G(x)) everywhere, with the strongest gradient where D rejects G's output.
    """
    if form == "paper":
        return -masked_bce(logits, fake_targets, mask)
    if form == "nonsaturating":
        return masked_bce(logits, 1.0, mask)
    raise ValueError(f"generator_adversarial_term: unknown form {form!r}; valid: paper, nonsaturating")
