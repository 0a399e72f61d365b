"""Algorithm 1 of Chen et al. 2017 as the config keys g_error_step, mse_scale and adv_stacks choose it, and the
adversarial/MSE gradient ratio the epoch log records. CPU, ``config.tiny`` (16 joints, 64 px, 16 px heatmaps)."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from conftest import adversarial_batch, rmsprop_per_net, tiny_config
from conftest import cpu_step_context as _ctx
from conftest import tiny_nets as _nets

import train_adversarial
import train_supervised
from reporting.plots import plot_training_curves
from training.build import adversarial_params, error_loss_params
from training.losses import heatmap_mse
from training.stats import epoch_means
from training.steps import (
    ErrorLoss,
    Nets,
    adversarial_step,
    adversarial_terms,
    error_loss,
    generator_step,
)

J = 16


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _counted_steps(opts: dict) -> list[str]:
    """Wrap each optimiser's ``step`` so every call appends the optimiser's name to the returned list."""
    calls: list[str] = []
    for name, opt in opts.items():
        def counted(*args, _name=name, _step=opt.step, **kwargs):
            calls.append(_name)
            return _step(*args, **kwargs)
        opt.step = counted
    return calls


# ---- g_error_step: Algorithm 1, step 1 ----------------------------------------------------------------------


@pytest.mark.parametrize("g_error_step", [True, False])
def test_optimiser_steps_per_iteration(g_error_step):
    """With step 1, G's optimiser steps twice per iteration (Eq. 1 alone, then Eq. 4); P and C each get their
    one update of Algorithm 1, which is one step on G's outputs (p_fake / c_fake) and one on the truth."""
    cfg = tiny_config({"g_error_step": g_error_step})
    nets = _nets(cfg)
    opts = rmsprop_per_net(nets)
    calls = _counted_steps(opts)
    adversarial_step(nets, opts, adversarial_batch(), _ctx(), error_loss_params(cfg), adversarial_params(cfg))
    order = ["pose_disc", "pose_disc", "conf_disc", "conf_disc", "generator"]
    assert calls == (["generator"] if g_error_step else []) + order
    assert calls.count("generator") == (2 if g_error_step else 1)


def test_step_1_is_the_error_loss_alone_and_p_and_c_see_g_after_it(monkeypatch):
    """G's first update has exactly the gradient of Eq. 1; the fake samples P and C learn from are the outputs
    of G with that update applied."""
    import training.steps as steps

    cfg = tiny_config()
    nets, b = _nets(cfg), adversarial_batch()
    start = _weights(nets.generator)

    reference = copy.deepcopy(nets.generator)
    error_loss(reference(b["image"]), b, error_loss_params(cfg)).backward()
    want_grads = {k: p.grad.clone() for k, p in reference.named_parameters()}

    opts = rmsprop_per_net(nets)
    seen: dict = {}

    def first_g_step(opt, _args, _kwargs):
        if "g_grads" not in seen:
            seen["g_grads"] = {k: p.grad.clone() for k, p in nets.generator.named_parameters()}
    opts["generator"].register_step_pre_hook(first_g_step)

    def before_p(_opt, _args, _kwargs):
        seen.setdefault("g_at_p", _weights(nets.generator))
    opts["pose_disc"].register_step_pre_hook(before_p)

    real_fake_samples = steps.fake_samples

    def spy(out, batch, adv):
        fake = real_fake_samples(out, batch, adv)
        seen["fake_pose"] = fake.pose.clone()
        return fake
    monkeypatch.setattr(steps, "fake_samples", spy)

    adversarial_step(nets, opts, b, _ctx(), error_loss_params(cfg), adversarial_params(cfg))
    for k, grad in want_grads.items():
        torch.testing.assert_close(seen["g_grads"][k], grad, msg=k)
    assert any(not torch.equal(seen["g_at_p"][k], v) for k, v in start.items())  # step 1 moved G first
    after_step_1 = _nets(cfg).generator
    after_step_1.load_state_dict(seen["g_at_p"])
    with torch.no_grad():  # train mode like the step's forward: BatchNorm uses the batch's statistics
        torch.testing.assert_close(seen["fake_pose"], after_step_1(b["image"])["pose"][-1])


# ---- mse_scale: the two readings of Eq. 1 -------------------------------------------------------------------


def test_eq1_literal_scale_is_eq_1_by_hand():
    """M = 2 images, N = 2 stacks, J = 2 joints, 2 x 2 heatmaps; joint 1 of image 1 is unlabelled.

    Labelled pixels: 3 joints x 4 px = 12. Target: 0 except pixel (0, 0) of image 0, joint 0 (= 1).
    Stack 0 predicts 0.5 everywhere: 12 x 0.25 = 3.0 (the target-1 pixel also errs by 0.5).
    Stack 1 predicts 1.0 everywhere: 11 pixels err by 1, the target-1 pixel by 0: 11.0.
    The unlabelled joint predicts 100 and counts nowhere. Sum over stacks = 14.0.
    eq1_literal = 14 / (2 M N) = 14 / 8 = 1.75; pixel_mean = 14 / 12 labelled pixels = 1.1667.
    Occlusion (Eq. 1's z term): target 1 at one labelled pixel, prediction 0 at both stacks: 2.0 more, so
    Eq. 1 = (14 + 2) / 8 = 2.0."""
    target = torch.zeros(2, 2, 2, 2)
    target[0, 0, 0, 0] = 1.0
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    stack0, stack1 = torch.full((2, 2, 2, 2), 0.5), torch.full((2, 2, 2, 2), 1.0)
    stack0[1, 1], stack1[1, 1] = 100.0, 100.0
    assert heatmap_mse([stack0, stack1], target, mask, 0.0, "eq1_literal").item() == pytest.approx(1.75)
    assert heatmap_mse([stack0, stack1], target, mask, 0.0, "pixel_mean").item() == pytest.approx(14 / 12)

    occ_target = torch.zeros(2, 2, 2, 2)
    occ_target[1, 0, 1, 1] = 1.0
    out = {"pose": [stack0, stack1], "occlusion": [torch.zeros(2, 2, 2, 2)] * 2}
    b = {"heatmaps": target, "occlusion": occ_target, "annotated": mask}
    assert error_loss(out, b, ErrorLoss(fg_weight=0.0, scale="eq1_literal")).item() == pytest.approx(2.0)


# ---- adv_stacks -----------------------------------------------------------------------------------------------


def _leaf_outputs(nets: Nets, b: dict) -> dict:
    """G's per-stack outputs as independent leaf tensors: a gradient on stack s's tensor then comes from the
    adversarial term judging stack s itself (in G, stack s also feeds later stacks through the merge convs)."""
    with torch.no_grad():
        out = nets.generator(b["image"])
    return {k: [t.clone().requires_grad_(True) for t in out[k]] for k in ("pose", "occlusion")}


@pytest.mark.parametrize("adv_stacks", ["all", "last"])
def test_adv_stacks_chooses_which_stack_outputs_the_adversarial_term_reaches(adv_stacks):
    cfg = tiny_config({"adv_stacks": adv_stacks})
    nets, b = _nets(cfg), adversarial_batch()
    for m in (nets.pose_disc, nets.conf_disc):
        m.requires_grad_(False)
    out = _leaf_outputs(nets, b)
    terms = adversarial_terms(nets, out, b, adversarial_params(cfg))
    (cfg.alpha * terms["L_C_gen"] + cfg.beta * terms["L_P_gen"]).backward()  # no MSE: the term alone
    stacks = len(out["pose"])
    for s in range(stacks):
        reached = adv_stacks == "all" or s == stacks - 1
        for kind in ("pose", "occlusion"):
            grad = out[kind][s].grad
            assert (grad is not None and bool(grad.abs().sum() > 0)) is reached, (kind, s)


def test_adv_stacks_all_averages_over_stacks_and_reaches_every_head_in_g():
    """Identical outputs at every stack: "all" gives the same terms as "last" (the mean keeps alpha, beta's
    scale). In G, with the MSE removed, the adversarial term alone puts a gradient on every stack's heads, and
    "all" adds a direct one on the first stack's head beyond what "last" sends there through the merge convs."""
    cfg_all, cfg_last = tiny_config({"adv_stacks": "all"}), tiny_config({"adv_stacks": "last"})
    nets, b = _nets(cfg_all), adversarial_batch()
    for m in (nets.pose_disc, nets.conf_disc):
        m.requires_grad_(False)
    out = _leaf_outputs(nets, b)
    same = {k: [out[k][-1]] * len(out[k]) for k in out}
    t_all = adversarial_terms(nets, same, b, adversarial_params(cfg_all))
    t_last = adversarial_terms(nets, same, b, adversarial_params(cfg_last))
    for k in ("L_C_gen", "L_P_gen"):
        torch.testing.assert_close(t_all[k], t_last[k])

    def head_grads(cfg) -> dict[str, torch.Tensor]:
        g = copy.deepcopy(nets.generator)
        terms = adversarial_terms(nets, g(b["image"]), b, adversarial_params(cfg))
        (cfg.alpha * terms["L_C_gen"] + cfg.beta * terms["L_P_gen"]).backward()
        return {k: p.grad.clone() for k, p in g.named_parameters() if "_heads." in k}

    grads_all, grads_last = head_grads(cfg_all), head_grads(cfg_last)
    assert all(g.abs().sum() > 0 for g in grads_all.values())
    assert not torch.allclose(grads_all["pose_heads.0.weight"], grads_last["pose_heads.0.weight"])


# ---- the adversarial / MSE gradient ratio -------------------------------------------------------------------


def test_gradient_ratio_matches_a_direct_computation_and_leaves_the_update_alone():
    cfg = tiny_config({"alpha": 0.3, "beta": 0.2})
    nets, b = _nets(cfg), adversarial_batch()
    loss, adv = error_loss_params(cfg), adversarial_params(cfg)

    # direct: gradients of each part of Eq. 4 at the last stack's pose and occlusion outputs, by backward
    direct = copy.deepcopy(nets)
    for m in (direct.pose_disc, direct.conf_disc):
        m.requires_grad_(False)
    out = direct.generator(b["image"])
    last = [out["pose"][-1], out["occlusion"][-1]]
    for t in last:
        t.retain_grad()
    terms = adversarial_terms(direct, out, b, adv)
    norms = []
    for part in (adv.alpha * terms["L_C_gen"] + adv.beta * terms["L_P_gen"], error_loss(out, b, loss)):
        for t in last:
            t.grad = None
        part.backward(retain_graph=True)
        norms.append(torch.cat([t.grad.flatten() for t in last]).norm())
    want = (norms[0] / norms[1]).item()
    assert 1e-4 < want < 1e4

    results = {}
    for measure in (True, False):
        run = copy.deepcopy(nets)
        opt = rmsprop_per_net(run)["generator"]
        stats = generator_step(run, opt, b, run.generator(b["image"]), _ctx(), loss, adv, measure=measure)
        results[measure] = (stats, _weights(run.generator))
    stats, weights = results[True]
    assert stats["adv_grad_ratio"].item() == pytest.approx(want, rel=1e-4)
    assert stats["adv_grad_measured"].item() == 1.0
    assert "adv_grad_ratio" not in results[False][0]
    for k, v in results[False][1].items():  # the measurement changed neither the update nor BatchNorm's statistics
        assert torch.equal(weights[k], v), k


def test_epoch_means_average_a_sometimes_statistic_over_its_measured_steps():
    sums = {"loss_mse": 4.0, "adv_grad_ratio": 0.6, "adv_grad_measured": 2.0}
    assert epoch_means(sums, 8) == {"loss_mse": 0.5, "adv_grad_ratio": 0.3, "adv_grad_measured": 2}
    assert epoch_means({"loss_mse": 4.0}, 8) == {"loss_mse": 0.5}  # never measured: left out, not 0


def test_epoch_log_records_the_ratio_once_per_print_every_and_the_curves_draw_it(tmp_path):
    """config.tiny: 16 synthetic images, batch 4 -> 4 steps an epoch; print_every 2 -> 2 measured batches."""
    common = ["--config", "config.tiny", "--dataset", "synthetic", "--device", "cpu", "--epochs", "2",
              "--save_root", str(tmp_path)]
    train_adversarial.main([*common, "--modelName", "adv"])
    log = [json.loads(line) for line in (tmp_path / "adv" / "log.jsonl").read_text().splitlines()]
    for rec in log:
        assert rec["adv_grad_measured"] == 2
        assert math.isfinite(rec["adv_grad_ratio"]) and rec["adv_grad_ratio"] > 0
        assert 0 <= rec["p_fake_ones"] <= 1 and 0 <= rec["c_fake_ones"] <= 1  # beside P and C's statistics
    train_supervised.main([*common, "--modelName", "sup"])
    sup_log = [json.loads(line) for line in (tmp_path / "sup" / "log.jsonl").read_text().splitlines()]
    assert all("adv_grad_ratio" not in rec for rec in sup_log)

    import matplotlib.image

    three = matplotlib.image.imread(plot_training_curves(str(tmp_path / "adv"), str(tmp_path / "adv.png")))
    two = matplotlib.image.imread(plot_training_curves(str(tmp_path / "sup"), str(tmp_path / "sup.png")))
    assert three.shape[1] == 1500 and two.shape[1] == 1000  # the ratio's panel only where there is a ratio
