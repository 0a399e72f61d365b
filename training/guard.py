"""The fault handling around one training step, kept out of Algorithm 1 (training/loop.py, training/steps.py).

``GuardedStep`` runs a step with the features a run asked for, each one small, testable alone and left out
when not asked for:

- ``SkipUnreadable`` (``--skip_bad_images``): counts the images the loader could not read; a batch left with
  none takes no step;
- ``SkipNonFinite`` (``--skip_nonfinite``): before each update, a loss that is NaN or inf is refused (the
  update does not step); a step with a refused update leaves the epoch's statistics alone, its BatchNorm
  statistics (updated by the forward passes) are put back, and it is counted as a skipped batch.

Under DDP each decision is the same on every rank (``agree``: ``runtime.distributed.all_ranks_agree``): one
rank skipping a step or an update while the others all-reduce gradients would leave the ranks' collectives
out of step, a hang under NCCL. The counts go to the run's ``TrainState`` (saved, logged per epoch).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from training.state import TrainState
from training.steps import Nets, StepContext, raw_module

Agree = Callable[[bool], bool]  # this process's decision -> the decision every rank takes
Step = Callable[[dict, StepContext], dict[str, torch.Tensor]]  # (batch, context) -> the step's statistics


def this_process(decision: bool) -> bool:
    """The agreement of a run of one process: its own decision."""
    return decision


@dataclass(frozen=True)
class StepOutcome:
    """What became of one batch."""

    taken: bool  # the batch took a step (an iteration)
    stats: dict[str, torch.Tensor] | None = None  # its statistics; None when not taken or an update was refused


@dataclass(frozen=True)
class SkipUnreadable:
    """``--skip_bad_images``: the loader's collate left out the samples it could not read (``skipped``)."""

    agree: Agree = this_process

    def readable(self, batch: dict, state: TrainState) -> dict | None:
        """``batch`` without its count of unreadable images (added to ``state``), or None when it has no image
        left (on any rank, under DDP)."""
        state.skipped_images += int(batch.pop("skipped", 0))
        return batch if self.agree("image" in batch) else None


@dataclass(frozen=True)
class SkipNonFinite:
    """``--skip_nonfinite``: refuse updates whose loss is NaN or inf, and undo what such a step did to BatchNorm."""

    nets: Nets
    agree: Agree = this_process

    def run(self, batch: dict, ctx: StepContext, step: Step, state: TrainState) -> dict[str, torch.Tensor] | None:
        """``step`` with every update gated on a finite loss; its statistics, or None when an update was refused
        (the step's BatchNorm statistics are then put back and ``state`` counts a skipped batch)."""
        verdicts: list[bool] = []

        def finite(loss: torch.Tensor) -> bool:  # one host sync per update
            verdicts.append(self.agree(bool(torch.isfinite(loss).item())))
            return verdicts[-1]

        saved = [b.clone() for b in self._buffers()]
        stats = step(batch, dataclasses.replace(ctx, gate=finite))
        if all(verdicts):
            return stats
        state.skipped_batches += 1
        for b, old in zip(self._buffers(), saved, strict=True):
            b.copy_(old)
        return None

    def _buffers(self) -> list[torch.Tensor]:
        """Every network's buffers (BatchNorm statistics)."""
        return [b for net in self.nets.named().values() for b in raw_module(net).buffers()]


@dataclass(frozen=True)
class GuardedStep:
    """One training step inside the run's fault handling (module doc); no feature: the step as it is."""

    ctx: StepContext
    unreadable: SkipUnreadable | None = None
    nonfinite: SkipNonFinite | None = None

    def __call__(self, batch: dict, step: Step, state: TrainState) -> StepOutcome:
        """Run ``step`` on ``batch`` with this context, skip counts going to ``state``."""
        if self.unreadable is not None:
            batch = self.unreadable.readable(batch, state)
            if batch is None:
                return StepOutcome(taken=False)
        if self.nonfinite is None:
            return StepOutcome(True, step(batch, self.ctx))
        return StepOutcome(True, self.nonfinite.run(batch, self.ctx, step, state))


def guarded_step(ctx: StepContext, nets: Nets, skip_bad_images: bool, skip_nonfinite: bool,
                 agree: Agree = this_process) -> GuardedStep:
    """The guard a run's flags ask for."""
    return GuardedStep(ctx, SkipUnreadable(agree) if skip_bad_images else None,
                       SkipNonFinite(nets, agree) if skip_nonfinite else None)
