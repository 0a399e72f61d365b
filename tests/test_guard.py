"""The fault handling around a training step (training/guard.py), each feature alone, and the pieces it rests
on: an update that says whether it stepped, one unwrapping of the placed networks, the error classes of a
diverged run and of a stop. CPU, ``config.tiny``."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.distributed as dist
from conftest import adversarial_batch, rmsprop_per_net, tiny_config

from training.build import adversarial_params, build_nets, build_step_context, error_loss_params
from training.guard import GuardedStep, SkipNonFinite, SkipUnreadable, guarded_step
from training.state import TrainState
from training.stats import DivergedError
from training.steps import Nets, StepContext, _update, raw_module, train_step
from utils.errors import Interrupted, OneLineExit, Stopped, UserInputError

CPU = torch.device("cpu")


def _setup(method: str = "adversarial"):
    cfg = tiny_config({"method": method})
    torch.manual_seed(0)
    nets = build_nets(cfg, 16)[0]
    opts = rmsprop_per_net(nets)
    return cfg, nets, opts, build_step_context(CPU, None, opts, 0.0, False)


def _step(cfg, nets, opts):
    def step(batch: dict, ctx: StepContext) -> dict:
        return train_step(nets, opts, batch, ctx, error_loss_params(cfg), adversarial_params(cfg))
    return step


def _weights(nets: Nets) -> dict:
    return {f"{n}.{k}": v.clone() for n, net in nets.named().items() for k, v in net.state_dict().items()}


# ---- _update -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("allowed", [True, False])
def test_update_says_whether_it_stepped_and_a_refused_one_changes_nothing(allowed):
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.RMSprop(net.parameters(), lr=0.1)
    seen = []
    ctx = StepContext(CPU, None, {"g": torch.amp.GradScaler("cpu", enabled=False)}, 0.0, False,
                      gate=lambda loss: seen.append(loss.item()) or allowed)
    before = [p.clone() for p in net.parameters()]
    loss = net(torch.ones(2, 3)).pow(2).mean()
    assert _update(loss, net.parameters(), opt, "g", ctx) is allowed
    assert seen == [pytest.approx(float(loss.detach()))]
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True)) is not allowed
    assert (opt.state == {}) is not allowed  # a refused update leaves no optimiser state either
    assert _update(net(torch.ones(2, 3)).sum(), net.parameters(), opt, "g", dataclasses.replace(ctx, gate=None))


# ---- SkipUnreadable ------------------------------------------------------------------------------------------

def test_skip_unreadable_counts_images_and_drops_a_batch_left_empty():
    feature, state = SkipUnreadable(), TrainState()
    assert feature.readable({"skipped": 2, "image": torch.zeros(1)}, state) is not None
    assert feature.readable({"skipped": 3}, state) is None
    assert state.skipped_images == 5 and state.skipped_batches == 0


def test_skip_unreadable_takes_the_decision_of_every_rank():
    asked = []
    feature = SkipUnreadable(agree=lambda mine: asked.append(mine) or False)  # another rank has no image
    assert feature.readable({"skipped": 0, "image": torch.zeros(1)}, TrainState()) is None and asked == [True]


# ---- SkipNonFinite -------------------------------------------------------------------------------------------

def test_skip_nonfinite_refuses_a_nan_step_and_puts_batchnorm_back():
    cfg, nets, opts, ctx = _setup("supervised")
    feature, state = SkipNonFinite(nets), TrainState()
    before = _weights(nets)
    nan = {**adversarial_batch(), "image": torch.full((4, 3, 64, 64), float("nan"))}
    assert feature.run(nan, ctx, _step(cfg, nets, opts), state) is None
    assert state.skipped_batches == 1
    after = _weights(nets)
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights, and the BatchNorm statistics
    stats = feature.run(adversarial_batch(), ctx, _step(cfg, nets, opts), state)
    assert stats is not None and all(torch.isfinite(v) for v in stats.values()) and state.skipped_batches == 1
    assert any(not torch.equal(before[k], v) for k, v in _weights(nets).items() if "running_mean" in k)


def test_skip_nonfinite_asks_every_rank_before_each_update():
    cfg, nets, opts, ctx = _setup("supervised")
    asked = []
    feature = SkipNonFinite(nets, agree=lambda mine: asked.append(mine) or False)  # another rank's loss is NaN
    state = TrainState()
    assert feature.run(adversarial_batch(), ctx, _step(cfg, nets, opts), state) is None
    assert asked == [True] and state.skipped_batches == 1  # the supervised step: one update, refused


# ---- GuardedStep ---------------------------------------------------------------------------------------------

def test_a_guard_without_features_is_the_step_itself():
    cfg, nets, opts, ctx = _setup()
    guard, state = guarded_step(ctx, nets, skip_bad_images=False, skip_nonfinite=False), TrainState()
    assert guard == GuardedStep(ctx)
    seen = []
    outcome = guard({"x": 1}, lambda b, c: seen.append((b, c)) or {"loss": torch.ones(())}, state)
    assert outcome.taken and set(outcome.stats) == {"loss"} and seen == [({"x": 1}, ctx)]
    assert state == TrainState()


def test_a_guard_with_both_features_skips_an_empty_batch_before_the_step():
    cfg, nets, opts, ctx = _setup()
    guard, state = guarded_step(ctx, nets, skip_bad_images=True, skip_nonfinite=True), TrainState()
    outcome = guard({"skipped": 4}, lambda b, c: pytest.fail("an empty batch took a step"), state)
    assert not outcome.taken and outcome.stats is None and state.skipped_images == 4
    outcome = guard({"skipped": 1, **adversarial_batch()}, _step(cfg, nets, opts), state)
    assert outcome.taken and outcome.stats is not None and (state.skipped_images, state.skipped_batches) == (5, 0)


# ---- one unwrapping --------------------------------------------------------------------------------------

def test_raw_module_unwraps_ddp_always_and_compile_unless_kept():
    net = torch.nn.Linear(2, 2)
    compiled = torch.compile(net)  # wrapped now, compiled at its first call (never here)
    assert raw_module(net) is net and raw_module(net, keep_compile=True) is net
    assert raw_module(compiled) is net and raw_module(compiled, keep_compile=True) is compiled
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(net)
        for wrapped in (ddp, torch.compile(ddp)):  # place_nets compiles around DDP
            assert raw_module(wrapped) is net and raw_module(wrapped, keep_compile=True) is net
    finally:
        dist.destroy_process_group()


# ---- errors --------------------------------------------------------------------------------------------------

def test_a_diverged_run_and_a_stop_are_not_the_users_mistake():
    for cls in (DivergedError, Interrupted, Stopped):
        assert issubclass(cls, OneLineExit) and not issubclass(cls, UserInputError)
    assert (DivergedError.exit_code, Interrupted.exit_code, Stopped("s", 15).exit_code) == (2, 130, 143)
