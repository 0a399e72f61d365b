"""Stacked hourglass generator (Newell et al. 2016), optionally multi-task (Chen et al).

Size rule: the stem divides the input by 4 and each hourglass halves its input ``depth``
times, so the input side must be divisible by ``4 * 2**depth`` (64 for the default depth
4: 256 -> 64, 128 -> 32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Residual(nn.Module):
    """Pre-activation bottleneck BN-ReLU-1x1 -> BN-ReLU-3x3 -> BN-ReLU-1x1, plus a skip.

    The skip is a 1x1 conv only when it must change channels or resolution (``stride`` 2
    is used by the discriminators for learned downsampling), else identity (Newell).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        if out_channels < 2:
            raise ValueError(f"Residual needs out_channels >= 2, got {out_channels}")
        mid = out_channels // 2
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, mid, 1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, stride=stride, padding=1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, 1),
        )
        needs_proj = in_channels != out_channels or stride != 1
        self.skip = nn.Conv2d(in_channels, out_channels, 1, stride=stride) if needs_proj else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return body(x) + skip(x)."""
        # body starts with an out-of-place BN, so its in-place ReLUs never overwrite the x
        # that the skip reads.
        return self.body(x) + self.skip(x)


def residual_stack(channels: int, num_blocks: int) -> nn.Sequential:
    """``num_blocks`` channel-preserving residual modules in sequence."""
    return nn.Sequential(*(Residual(channels, channels) for _ in range(num_blocks)))


class Hourglass(nn.Module):
    """Recursive hourglass: full-resolution skip branch plus a pooled, recursing branch.

    Output has the input's shape; the input side must be divisible by ``2**depth``.
    """

    def __init__(self, depth: int, channels: int, num_blocks: int = 1):
        super().__init__()
        if depth < 1:
            raise ValueError(f"Hourglass depth must be >= 1, got {depth}")
        self.up = residual_stack(channels, num_blocks)
        self.down = residual_stack(channels, num_blocks)
        self.inner = Hourglass(depth - 1, channels, num_blocks) if depth > 1 else residual_stack(channels, num_blocks)
        self.after = residual_stack(channels, num_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return up(x) + upsample(after(inner(down(pool(x))))), all (B, C, H, W)."""
        low = self.after(self.inner(self.down(F.max_pool2d(x, 2))))  # (B, C, H/2, W/2)
        return self.up(x) + F.interpolate(low, scale_factor=2.0, mode="nearest")


class StackedHourglass(nn.Module):
    """Stacked hourglass generator with intermediate supervision and optional occlusion.

    ``forward`` returns ``{"pose": [per stack (B, J, H/4, W/4)], "occlusion": same or
    None}``; heads are plain linear regressions (no sigmoid), as in Newell et al.
    """

    def __init__(
        self,
        num_joints: int,
        num_stacks: int = 4,
        channels: int = 256,
        depth: int = 4,
        num_blocks: int = 1,
        predict_occlusion: bool = False,
        in_channels: int = 3,
    ):
        super().__init__()
        if channels % 4 != 0 or channels < 4:
            raise ValueError(f"channels must be a positive multiple of 4, got {channels}")
        if num_stacks < 1 or num_joints < 1:
            raise ValueError(f"need num_stacks, num_joints >= 1, got {num_stacks}, {num_joints}")
        self.num_joints = num_joints
        self.num_stacks = num_stacks
        self.depth = depth
        self.predict_occlusion = predict_occlusion
        # Newell's stem is 64 -> 128 -> 256 channels for 256 features; scaling it with
        # ``channels`` keeps that ratio for the small presets and the paper's 512-ch G.
        c4, c2 = channels // 4, channels // 2
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c4, 7, stride=2, padding=3),  # (B, C/4, H/2, W/2)
            nn.BatchNorm2d(c4),
            nn.ReLU(inplace=True),
            Residual(c4, c2),
            nn.MaxPool2d(2),  # (B, C/2, H/4, W/4)
            Residual(c2, c2),
            Residual(c2, channels),
        )
        self.hourglasses = nn.ModuleList(Hourglass(depth, channels, num_blocks) for _ in range(num_stacks))
        self.post = nn.ModuleList(residual_stack(channels, num_blocks) for _ in range(num_stacks))
        self.features = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(channels, channels, 1),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            )
            for _ in range(num_stacks)
        )
        self.pose_heads = nn.ModuleList(nn.Conv2d(channels, num_joints, 1) for _ in range(num_stacks))
        # Merge convs feed features and predictions back into the trunk; the last stack
        # has nothing to feed, so it has none.
        n_merge = num_stacks - 1
        self.merge_features = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(n_merge))
        self.merge_pose = nn.ModuleList(nn.Conv2d(num_joints, channels, 1) for _ in range(n_merge))
        if predict_occlusion:
            self.occlusion_heads = nn.ModuleList(nn.Conv2d(channels, num_joints, 1) for _ in range(num_stacks))
            self.merge_occlusion = nn.ModuleList(nn.Conv2d(num_joints, channels, 1) for _ in range(n_merge))

    def forward(self, x: torch.Tensor) -> dict[str, list[torch.Tensor] | None]:
        """Per-stack heatmaps for images (B, in_channels, H, W); see the size rule."""
        multiple = 4 * 2**self.depth
        if x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise ValueError(f"input size {tuple(x.shape[-2:])} must be divisible by {multiple} (4 * 2**depth)")
        x = self.stem(x)  # (B, C, H/4, W/4)
        poses: list[torch.Tensor] = []
        occlusions: list[torch.Tensor] = []
        for i in range(self.num_stacks):
            feat = self.post[i](self.hourglasses[i](x))
            feat = self.features[i](feat)  # (B, C, H/4, W/4)
            pose = self.pose_heads[i](feat)  # (B, J, H/4, W/4)
            poses.append(pose)
            if self.predict_occlusion:
                occlusions.append(self.occlusion_heads[i](feat))
            if i < self.num_stacks - 1:
                # Sec. 2.1 of Chen et al.: both tasks' predictions feed the next stack.
                x = x + self.merge_features[i](feat) + self.merge_pose[i](pose)
                if self.predict_occlusion:
                    x = x + self.merge_occlusion[i](occlusions[-1])
        return {
            "pose": poses,
            "occlusion": occlusions if self.predict_occlusion else None,
        }
