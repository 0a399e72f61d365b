"""Time budgets from measured step times: how many steps, timed windows and epochs fit in a budget, and how
long each part of a chain of runs may take.

Arithmetic on seconds measured on the machine at hand (a process's start-up, its first steps with cuDNN
autotuning and torch.compile, one warm step); nothing here times anything or reads a file.
``scripts/benchmark.py --time_budget`` sizes its timed windows with it, ``scripts/acceptance_plan.py`` the
training runs and the time limit of every step of ``scripts/gpu-acceptance.sh``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# A training step's backward pass costs about twice its forward pass (the usual estimate for convolutional
# nets: two convolutions per convolution, one for the input's gradient and one for the weights'), so a
# forward-only validation batch costs about a third of a training step.
FORWARD_SHARE = 1.0 / 3.0
# The trainer's validation runs G in eval mode without gradients: under torch.compile that is a second graph
# (forward kernels only), and the last, smaller val batch a third shape. Both compile once at the first
# validation, about as long as the training graph's warm-up together.
EVAL_WARMUP_SHARE = 1.0


@dataclass(frozen=True)
class StepTiming:
    """One workload as measured on this machine, in seconds."""

    startup_s: float  # process start, imports, building data and networks: everything before the first step
    warmup_s: float  # the first steps: cuDNN autotuning and torch.compile (measured, so counted)
    step_s: float  # one warm step on a batch already in memory
    batch_load_s: float = 0.0  # the input pipeline's time per batch, all its workers together (0: not limiting)
    val_passes: int = 1  # forward passes per validation batch (2 with the flip test)


def steps_that_fit(budget_s: float, warmup_s: float, step_s: float) -> int:
    """Warm steps of ``step_s`` seconds that fit in ``budget_s`` after a warm-up of ``warmup_s`` (compile
    included): floor((budget - warm-up) / step), 0 when none fit."""
    if step_s <= 0:
        raise ValueError(f"step_s={step_s}: a measured step takes a positive time")
    return max(0, math.floor((budget_s - warmup_s) / step_s))


def window_iterations(budget_s: float, step_s: float, repeats: int, min_iters: int = 2,
                      max_iters: int = 100) -> int:
    """Steps per timed window such that ``repeats`` windows take about ``budget_s`` seconds, between
    ``min_iters`` (a window of one step times the launch, not the rate) and ``max_iters``."""
    return min(max_iters, max(min_iters, steps_that_fit(budget_s, 0.0, step_s) // max(1, repeats)))


@dataclass(frozen=True)
class TrainingPlan:
    """A training run sized to a budget."""

    epochs: int
    samples: int  # train samples per epoch (the trainer's --max_train_samples)
    seconds: float  # planned wall time: start-up, both warm-ups, every epoch


def epoch_seconds(samples: int, batch: int, val_samples: int, step_s: float, overhead_s: float,
                  batch_load_s: float = 0.0, val_passes: int = 1) -> float:
    """One epoch: ``samples // batch`` training steps, validation over ``val_samples`` (``val_passes`` forward
    passes per batch, each about ``FORWARD_SHARE`` of a step) and ``overhead_s`` per epoch (DataLoader
    workers starting). The DataLoader's workers prepare batches while the device computes, so a batch takes
    the longer of the two (``batch_load_s``: the input pipeline's seconds per batch)."""
    val_batches = math.ceil(val_samples / batch)
    return ((samples // batch) * max(step_s, batch_load_s)
            + val_batches * max(val_passes * FORWARD_SHARE * step_s, batch_load_s) + overhead_s)


def _fixed_seconds(timing: StepTiming) -> float:
    """A run's start-up and the warm-ups of its training and validation graphs, counted once."""
    return timing.startup_s + timing.warmup_s * (1.0 + EVAL_WARMUP_SHARE)


def run_seconds(timing: StepTiming, epochs: int, samples: int, batch: int, val_size: int,
                epoch_overhead_s: float) -> float:
    """Planned wall time of a run of ``epochs`` epochs of ``samples`` train samples each."""
    return _fixed_seconds(timing) + epochs * epoch_seconds(samples, batch, val_size, timing.step_s, epoch_overhead_s,
                                                           timing.batch_load_s, timing.val_passes)


def plan_training(budget_s: float, timing: StepTiming, batch: int, train_size: int, val_size: int,
                  min_epochs: int, max_epochs: int, epoch_overhead_s: float) -> TrainingPlan | None:
    """The longest run of at most ``max_epochs`` that fits ``budget_s``: whole train sets (``train_size``
    samples) per epoch while ``min_epochs`` of them fit, else ``min_epochs`` of fewer samples (whole batches).
    Start-up and the warm-ups of the training and the validation graphs are counted once. None when even
    ``min_epochs`` epochs of one batch do not fit."""
    plans = plan_runs(budget_s, [timing], batch, train_size, val_size, min_epochs, max_epochs, epoch_overhead_s)
    return plans[0] if plans else None


def plan_runs(budget_s: float, timings: list[StepTiming], batch: int, train_size: int, val_size: int,
              min_epochs: int, max_epochs: int, epoch_overhead_s: float) -> list[TrainingPlan] | None:
    """A first run and the runs that continue from its snapshot (the adversarial half started from the
    supervised run), all on as many samples per epoch, fitting ``budget_s`` together: each continuation runs
    half as many epochs as the first (at least one), so that it ends where the first does. The most epochs
    (at most ``max_epochs``) of whole train sets, else ``min_epochs`` of fewer samples; None when not even
    ``min_epochs`` of one batch fit."""

    def epochs_of(first: int) -> list[int]:
        return [first] + [max(1, first // 2)] * (len(timings) - 1)

    def total(first: int, samples: int) -> float:
        return sum(run_seconds(t, e, samples, batch, val_size, epoch_overhead_s)
                   for t, e in zip(timings, epochs_of(first), strict=True))

    def plans(first: int, samples: int) -> list[TrainingPlan]:
        return [TrainingPlan(e, samples, run_seconds(t, e, samples, batch, val_size, epoch_overhead_s))
                for t, e in zip(timings, epochs_of(first), strict=True)]

    for first in range(max_epochs, min_epochs - 1, -1):
        if total(first, train_size) <= budget_s:
            return plans(first, train_size)
    epochs = epochs_of(min_epochs)
    step_cost = sum(e * max(t.step_s, t.batch_load_s) for t, e in zip(timings, epochs, strict=True))  # a batch more
    steps = steps_that_fit(budget_s - total(min_epochs, 0), 0.0, step_cost)
    if steps < 1:
        return None
    return plans(min_epochs, min(train_size, steps * batch))


def deadlines(start_s: float, planned_s: dict[str, float]) -> dict[str, float]:
    """When each step of a chain must end: ``start_s`` plus the planned seconds of it and every step before
    it (in the dict's order). Time a step leaves unused passes to the ones after it; a step that overruns
    takes it from them, up to its own deadline."""
    out, at = {}, start_s
    for name, seconds in planned_s.items():
        at += max(0.0, seconds)
        out[name] = at
    return out
