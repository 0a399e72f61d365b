"""Pose (P) and confidence (C) discriminators of Adversarial PoseNet (Sec. 2.2-2.3).

Both are encoder-decoders with skips between mirrored layers that score each joint
separately: the output is a J-vector of probabilities that joint j of the input heatmaps
is "real" (plausible for P, confidently correct for C). P also sees the image, resized to
the heatmap resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.hourglass import Residual


class HeatmapDiscriminator(nn.Module):
    """Encoder-decoder over stacked maps returning per-joint logits/probabilities (B, J).

    Encoder: ``depth`` stride-2 residual stages; decoder: nearest upsampling plus an
    additive skip from the mirrored encoder stage, then a residual. Head: BN-ReLU, 1x1
    conv to J per-pixel logits, then global average pooling. Averaging (instead of a
    flattening FC layer) keeps the head independent of the heatmap size (64 or 32) and
    lets each joint's score pool evidence from the whole map. Input sides must be
    divisible by ``2**depth``.
    """

    def __init__(self, in_channels: int, num_joints: int, channels: int = 128, depth: int = 3):
        super().__init__()
        if depth < 1:
            raise ValueError(f"discriminator depth must be >= 1, got {depth}")
        self.in_channels = in_channels
        self.num_joints = num_joints
        self.depth = depth
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1), Residual(channels, channels))
        self.encoder = nn.ModuleList(Residual(channels, channels, stride=2) for _ in range(depth))
        self.decoder = nn.ModuleList(Residual(channels, channels) for _ in range(depth))
        self.head = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, num_joints, 1),
        )

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Per-joint logits (B, J) for (B, in_channels, H, W); for BCE-with-logits."""
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {x.shape[1]}")
        multiple = 2**self.depth
        if x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise ValueError(f"input size {tuple(x.shape[-2:])} must be divisible by {multiple} (2**depth)")
        x = self.stem(x)  # (B, C, H, W)
        skips = []
        for stage in self.encoder:
            skips.append(x)
            x = stage(x)  # halves H and W
        # x: (B, C, H / 2**depth, W / 2**depth); walk back up, deepest skip first.
        for stage, skip in zip(self.decoder, reversed(skips), strict=True):
            x = stage(F.interpolate(x, scale_factor=2.0, mode="nearest") + skip)
        return self.head(x).mean(dim=(-2, -1))  # (B, J)

    def forward(self, x: torch.Tensor, logits: bool = False) -> torch.Tensor:
        """Per-joint probabilities in [0, 1], shape (B, J); ``logits=True`` returns the logits instead
        (a keyword rather than only a method, so it also reaches the network through a DDP wrapper)."""
        out = self.forward_logits(x)
        return out if logits else torch.sigmoid(out)


def pose_discriminator(
    num_joints: int,
    image_channels: int = 3,
    use_occlusion: bool = True,
    channels: int = 128,
    depth: int = 3,
) -> HeatmapDiscriminator:
    """P: image (resized) + J pose (+ J occlusion) heatmaps; see ``pose_disc_input``."""
    in_channels = image_channels + num_joints * (2 if use_occlusion else 1)
    return HeatmapDiscriminator(in_channels, num_joints, channels, depth)


def confidence_discriminator(
    num_joints: int, use_occlusion: bool = True, channels: int = 128, depth: int = 3
) -> HeatmapDiscriminator:
    """C: J pose heatmaps (+ J occlusion heatmaps); see ``conf_disc_input``."""
    return HeatmapDiscriminator(num_joints * (2 if use_occlusion else 1), num_joints, channels, depth)


def conf_disc_input(pose: torch.Tensor, occlusion: torch.Tensor | None) -> torch.Tensor:
    """Pose (B, J, h, w) and optional occlusion (B, J, h, w) heatmaps along channels."""
    return pose if occlusion is None else torch.cat([pose, occlusion], dim=1)


def pose_disc_input(image: torch.Tensor, pose: torch.Tensor, occlusion: torch.Tensor | None) -> torch.Tensor:
    """Image (B, 3, H, W) resized to (h, w) then the heatmaps: (B, 3 + J (+ J), h, w)."""
    small = F.interpolate(
        image,
        size=pose.shape[-2:],
        mode="bilinear",
        align_corners=False,
        antialias=False,
    )
    # Under autocast the heatmaps may be bf16 while the image is fp32; cast to one dtype.
    return torch.cat([small.to(pose.dtype), conf_disc_input(pose, occlusion)], dim=1)
