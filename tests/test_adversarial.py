"""Adversarial PoseNet (Chen et al. 2017): fake targets, Algorithm 1's gradient isolation, ablations, a tiny run.

Everything runs on CPU with ``config.tiny`` (16 joints, 64 px input, 16 px heatmaps).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import pytest
import torch
from conftest import adversarial_batch, rmsprop_per_net, tiny_config
from conftest import cpu_step_context as _ctx
from conftest import tiny_nets as _tiny_nets

import test as test_entry
import train_adversarial
import train_supervised
from checkpoint import load_checkpoint
from datasets.skeleton import MPII
from models import count_parameters
from training.build import adversarial_params, build_nets, error_loss_params, generator_args, resolve_for_dataset
from training.losses import confidence_fake_targets, masked_bce, pose_fake_targets
from training.preflight import check_pretrained
from training.run import build_run, checkpoint_of, load_pretrained
from training.steps import Nets, adversarial_step, adversarial_targets, to_device, train_step

J = 16  # joints of the synthetic dataset (MPII layout)


def _step(nets: Nets, opts: dict, b: dict, cfg) -> dict:
    """Steps 2-4 of Algorithm 1 alone (``g_error_step`` off): P, C, then one G update by Eq. 4, so that each
    network's update is checked without step 1's extra G update."""
    adv = dataclasses.replace(adversarial_params(cfg), g_error_step=False, gen_iters=1, disc_iters=1)
    return adversarial_step(nets, opts, b, _ctx(), error_loss_params(cfg), adv)


def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _grads(module: torch.nn.Module) -> dict[str, torch.Tensor | None]:
    return {k: None if v.grad is None else v.grad.detach().clone() for k, v in module.named_parameters()}


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))
        for x, y in zip(a.values(), b.values(), strict=True))


# ---- fake targets and the masked loss ---------------------------------------------------------------------


def test_pose_fake_target_switches_at_delta_times_the_reference_length():
    gt = torch.zeros(1, 4, 2)
    pred = torch.tensor([[[4.99, 0.0], [5.01, 0.0], [0.0, -4.99], [3.0, 4.1]]])  # last: 5.08 px away
    targets = pose_fake_targets(pred, gt, torch.tensor([10.0]), delta=0.5)
    assert targets.tolist() == [[1.0, 0.0, 1.0, 0.0]]
    assert targets.dtype == torch.float32
    # the threshold scales with each sample's own reference length
    two = pose_fake_targets(pred.expand(2, 4, 2), gt.expand(2, 4, 2), torch.tensor([10.0, 20.0]), delta=0.5)
    assert two.tolist() == [[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]]


def test_confidence_fake_target_switches_at_epsilon():
    gt = torch.zeros(1, 3, 8, 8)
    gt[:, :, 4, 4] = 1.0
    pred = gt.clone()
    pred[0, 0, 1, 1] += 0.99  # ||diff|| = 0.99 < 1
    pred[0, 1, 1, 1] += 1.01  # ||diff|| = 1.01 > 1
    pred[0, 2, 0, :2] = torch.tensor([0.6, 0.6])  # spread out: sqrt(0.72) ~ 0.85 < 1
    assert confidence_fake_targets(pred, gt, epsilon=1.0).tolist() == [[1.0, 0.0, 1.0]]
    assert confidence_fake_targets(pred, gt, epsilon=0.8).tolist() == [[0.0, 0.0, 0.0]]


def test_masked_bce_ignores_unannotated_joints():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    mask = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    loss = masked_bce(logits, targets, mask)
    changed = logits.clone()
    changed[0, 1], changed[1, 2] = 50.0, -50.0  # masked joints, now confidently wrong
    assert torch.equal(masked_bce(changed, targets, mask), loss)
    per_joint = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    torch.testing.assert_close(loss, per_joint[mask.bool()].mean())
    # masked joints get no gradient either
    x = logits.clone().requires_grad_(True)
    masked_bce(x, targets, mask).backward()
    assert (x.grad[mask == 0] == 0).all() and (x.grad[mask == 1] != 0).all()
    # a scalar target (the "real" label) and an all-masked batch
    assert masked_bce(logits, 1.0, mask).item() == pytest.approx(
        torch.nn.functional.softplus(-logits)[mask.bool()].mean().item())
    assert masked_bce(logits, 1.0, torch.zeros_like(mask)).item() == 0.0


def test_adversarial_targets_use_heatmap_px_and_drop_samples_without_reference():
    n, out, res = 3, 16, 64
    b = adversarial_batch(n, res, out)
    hm_gt = torch.full((n, J, 2), 8.0)  # ground truth at heatmap px (8, 8) for every joint
    b["joints"] = ((hm_gt + 0.5) * res / out - 0.5).float()  # -> input px 33.5
    b["heatmaps"] = torch.zeros(n, J, out, out)
    b["heatmaps"][:, :, 8, 8] = 1.0
    b["ref_length"] = torch.tensor([40.0, float("nan"), 40.0], dtype=torch.float64)  # 40 input px = 10 hm px
    b["affine"][2, :, :2] *= 2.0  # sample 2 is zoomed 2x: its reference is 20 hm px
    fake = torch.zeros(n, J, out, out)
    fake[:, 0, 8, 12] = 1.0  # 4 px away: within 0.5 x 10
    fake[:, 1, 8, 14] = 1.0  # 6 px away: outside 0.5 x 10, inside 0.5 x 20
    fake[:, 2:, 8, 8] = 1.0  # exact
    p_fake, c_fake, p_mask = adversarial_targets(fake, b, delta=0.5, epsilon=1.0, input_res=res)
    assert p_fake[0, :3].tolist() == [1.0, 0.0, 1.0]
    assert p_fake[2, :3].tolist() == [1.0, 1.0, 1.0]
    assert c_fake[:, 0].tolist() == [0.0] * n and c_fake[:, 2:].eq(1).all()  # moved peak: ||diff|| = sqrt(2)
    assert p_mask[1].eq(0).all(), "a sample without reference length must not train P on fake"
    assert torch.equal(p_mask[[0, 2]], b["annotated"][[0, 2]])
    assert p_mask[0, :3].eq(0).all()  # unannotated joints of sample 0 stay masked


# ---- Algorithm 1: who gets which gradient -----------------------------------------------------------------


def _spy_step(nets: Nets, cfg, b: dict) -> dict:
    """Run one adversarial_step with hooks on each optimiser; returns what the hooks saw."""
    opts = rmsprop_per_net(nets)
    g, P, C = nets.generator, nets.pose_disc, nets.conf_disc
    seen: dict = {"g_before": _params(g), "disc_steps": 0}

    def after_disc_step(_opt, _args, _kwargs):
        seen["disc_steps"] += 1
        seen["g_at_disc_step_equal"] = seen.get("g_at_disc_step_equal", True) and _equal(_params(g), seen["g_before"])
        seen["g_grad_none_at_disc_step"] = seen.get("g_grad_none_at_disc_step", True) and all(
            p.grad is None for p in g.parameters())
        seen["disc_after_own_steps"] = {"P": _params(P), "C": _params(C)}
        seen["disc_grads_after_own_steps"] = {"P": _grads(P), "C": _grads(C)}

    def before_g_step(_opt, _args, _kwargs):
        seen["g_grads"] = _grads(g)
        seen["disc_at_g_step"] = {"P": _params(P), "C": _params(C)}
        seen["disc_grads_at_g_step"] = {"P": _grads(P), "C": _grads(C)}
        seen["disc_requires_grad_at_g_step"] = [p.requires_grad for m in (P, C) for p in m.parameters()]

    opts["pose_disc"].register_step_post_hook(after_disc_step)
    opts["conf_disc"].register_step_post_hook(after_disc_step)
    opts["generator"].register_step_pre_hook(before_g_step)
    seen["stats"] = _step(nets, opts, b, cfg)
    seen["g_after"] = _params(g)
    seen["disc_after"] = {"P": _params(P), "C": _params(C)}
    return seen


def test_discriminator_steps_leave_g_alone_and_g_step_leaves_p_and_c_alone():
    cfg = tiny_config()
    nets = _tiny_nets(cfg)
    seen = _spy_step(nets, cfg, adversarial_batch())
    assert seen["disc_steps"] == 4  # P fake, P real, C fake, C real
    # P and C updates: G untouched, and no gradient from the discriminator losses leaked into G
    assert seen["g_at_disc_step_equal"] and seen["g_grad_none_at_disc_step"]
    # G's update: P and C frozen, receive no gradient, and keep the parameters of their own last step
    assert not any(seen["disc_requires_grad_at_g_step"])
    for k in ("P", "C"):
        assert _equal(seen["disc_grads_at_g_step"][k], seen["disc_grads_after_own_steps"][k])
        assert _equal(seen["disc_at_g_step"][k], seen["disc_after_own_steps"][k])
        assert _equal(seen["disc_after"][k], seen["disc_after_own_steps"][k])
    assert all(p.requires_grad for m in (nets.pose_disc, nets.conf_disc) for p in m.parameters())  # unfrozen again
    # ... and G did move
    assert not _equal(seen["g_after"], seen["g_before"])
    expected = {"loss_mse", "loss_G", "L_P_fake", "L_P_real", "P_fake", "P_real", "p_fake_ones",
                "L_C_fake", "L_C_real", "C_fake", "C_real", "c_fake_ones", "L_P_gen", "L_C_gen"}
    assert set(seen["stats"]) == expected
    assert all(torch.isfinite(v) and not v.requires_grad for v in seen["stats"].values())
    loss_g = seen["stats"]["loss_mse"] + cfg.alpha * seen["stats"]["L_C_gen"] + cfg.beta * seen["stats"]["L_P_gen"]
    torch.testing.assert_close(seen["stats"]["loss_G"], loss_g)  # Eq. 4


@pytest.mark.parametrize("form", ["paper", "nonsaturating"])
def test_each_loss_of_algorithm_1_gets_its_targets_and_mask(monkeypatch, form):
    """Order P fake, P real, C fake, C real, then G's C and P terms. Only P's terms on G's output drop unscored
    samples. G's terms: the paper's form takes the fake targets P and C just learnt (minus their BCE); the
    non-saturating form the target "real" on every annotated joint."""
    import training.losses as losses
    import training.steps as steps

    calls = []

    def recording_bce(logits, targets, mask):
        calls.append((logits.requires_grad, targets, mask.clone()))
        return masked_bce(logits, targets, mask)

    monkeypatch.setattr(steps, "masked_bce", recording_bce)
    monkeypatch.setattr(losses, "masked_bce", recording_bce)  # G's terms: losses.generator_adversarial_term
    cfg = tiny_config({"g_adv_form": form})
    nets = _tiny_nets(cfg)
    b = adversarial_batch()
    b["ref_length"][1] = float("nan")
    with torch.no_grad():
        fake = nets.generator(b["image"])["pose"][-1]  # BN in train mode: the step's own forward sees the same
    p_fake, c_fake, p_mask = adversarial_targets(fake, b, cfg.delta, cfg.epsilon, cfg.input_res)
    _step(nets, rmsprop_per_net(nets), b, cfg)
    assert len(calls) == 6
    (_, t0, m0), (_, t1, m1), (_, t2, m2), (_, t3, m3), (g4, t4, m4), (g5, t5, m5) = calls
    assert torch.equal(t0, p_fake) and torch.equal(m0, p_mask) and m0[1].eq(0).all()
    assert torch.equal(t2, c_fake)
    assert t1 == t3 == 1.0
    for m in (m1, m2, m3, m4):
        assert torch.equal(m, b["annotated"])
    if form == "paper":
        assert torch.equal(t4, c_fake) and torch.equal(t5, p_fake) and torch.equal(m5, p_mask)
    else:
        assert t4 == t5 == 1.0 and torch.equal(m5, b["annotated"])
    assert g4 and g5  # G's terms keep the graph to G


def test_each_adversarial_term_alone_sends_gradient_into_g():
    """G's gradient at its update with alpha=beta=0 (MSE only) vs alpha=1 (+L_C) vs beta=1 (+L_P): each
    adversarial term on its own changes the gradient of the last stack's heads (and of the trunk)."""
    base = _tiny_nets(tiny_config())
    b = adversarial_batch()

    def g_grads(alpha: float, beta: float) -> dict:
        cfg = tiny_config({"alpha": alpha, "beta": beta})
        return _spy_step(copy.deepcopy(base), cfg, b)["g_grads"]

    mse_only = g_grads(0.0, 0.0)
    assert _equal(g_grads(0.0, 0.0), mse_only), "CPU step is not deterministic; the comparison below means nothing"
    last = base.generator.num_stacks - 1
    heads = [f"pose_heads.{last}.weight", f"pose_heads.{last}.bias",
             f"occlusion_heads.{last}.weight", f"occlusion_heads.{last}.bias", "stem.0.weight"]
    for alpha, beta in ((1.0, 0.0), (0.0, 1.0)):
        with_term = g_grads(alpha, beta)
        for name in heads:
            diff = (with_term[name] - mse_only[name]).abs().max().item()
            assert diff > 1e-6, f"alpha={alpha} beta={beta}: no gradient from the adversarial term in {name}"
        # the first stack's heads influence the last stack through the merge convs
        assert not torch.equal(with_term["pose_heads.0.weight"], mse_only["pose_heads.0.weight"])


def test_gradient_of_each_generator_term_reaches_g_only():
    """The Eq. 4 terms computed by hand from G's last stack: each reaches G's last heads, none reaches P or C."""
    from models import conf_disc_input, pose_disc_input

    cfg = tiny_config()
    nets = _tiny_nets(cfg)
    b = adversarial_batch()
    for m in (nets.pose_disc, nets.conf_disc):
        m.requires_grad_(False)
    for term in ("L_C_gen", "L_P_gen"):
        nets.generator.zero_grad(set_to_none=True)
        out = nets.generator(b["image"])
        pose, occ = out["pose"][-1], out["occlusion"][-1]
        if term == "L_C_gen":
            logits = nets.conf_disc(conf_disc_input(pose, occ), logits=True)
        else:
            logits = nets.pose_disc(pose_disc_input(b["image"], pose, occ), logits=True)
        masked_bce(logits, 1.0, b["annotated"]).backward()
        g = dict(nets.generator.named_parameters())
        for name in ("pose_heads.1.weight", "occlusion_heads.1.weight", "pose_heads.1.bias"):
            assert g[name].grad is not None and g[name].grad.abs().sum() > 0, (term, name)
        assert all(p.grad is None for m in (nets.pose_disc, nets.conf_disc) for p in m.parameters())


# ---- ablations (Fig. 9) -----------------------------------------------------------------------------------


def _parsed(module, *flags) -> tuple:
    """(cfg, spec) the entry script would train with, without training."""
    captured = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module, "train", lambda cfg, spec: captured.update(cfg=cfg, spec=spec))
        module.main(["--config", "config.tiny", "--dataset", "synthetic", "--device", "cpu", *flags])
    return captured["cfg"], captured["spec"]


def test_fig9_variants_are_constructible():
    variants = {
        "Single": (train_supervised, ["--set", "predict_occlusion=False"], False, False),
        "Multi": (train_supervised, [], True, False),
        "Single+Dis": (train_adversarial, ["--no_occlusion"], False, True),
        "Multi+Dis": (train_adversarial, [], True, True),
    }
    for name, (module, flags, occlusion, discs) in variants.items():
        cfg, _ = _parsed(module, *flags)
        nets, args = build_nets(cfg, J)
        assert nets.generator.predict_occlusion is occlusion, name
        assert hasattr(nets.generator, "occlusion_heads") is occlusion, name
        assert (nets.pose_disc is not None, nets.conf_disc is not None) == (discs, discs), name
        assert set(args) == ({"generator", "pose_disc", "conf_disc"} if discs else {"generator"}), name
        with torch.no_grad():
            out = nets.generator.eval()(torch.zeros(1, 3, cfg.input_res, cfg.input_res))
        assert (out["occlusion"] is not None) is occlusion, name


def test_no_occlusion_removes_exactly_the_occlusion_modules():
    full_cfg, _ = _parsed(train_adversarial)
    full = build_nets(full_cfg, J)[0]
    cfg, _ = _parsed(train_adversarial, "--no_occlusion")
    assert cfg.predict_occlusion is False
    single = build_nets(cfg, J)[0]
    occ_modules = [full.generator.occlusion_heads, full.generator.merge_occlusion]
    assert count_parameters(full.generator) - count_parameters(single.generator) == sum(
        count_parameters(m) for m in occ_modules)
    assert not any("occlusion" in k for k in single.generator.state_dict())
    # P sees image + pose (+ occlusion), C sees pose (+ occlusion): only the first conv's input channels differ
    assert (full.pose_disc.in_channels, single.pose_disc.in_channels) == (3 + 2 * J, 3 + J)
    assert (full.conf_disc.in_channels, single.conf_disc.in_channels) == (2 * J, J)
    first_conv = cfg.disc_channels * J * 3 * 3
    assert count_parameters(full.pose_disc) - count_parameters(single.pose_disc) == first_conv
    assert count_parameters(full.conf_disc) - count_parameters(single.conf_disc) == first_conv
    # and the adversarial step runs without occlusion maps
    stats = _step(single, rmsprop_per_net(single), adversarial_batch(), resolve_for_dataset(cfg, MPII))
    assert all(torch.isfinite(v) for v in stats.values())


@pytest.mark.parametrize(("flag", "dropped", "kept", "prefix"),
                         [("--no_pose_disc", "pose_disc", "conf_disc", "P"),
                          ("--no_conf_disc", "conf_disc", "pose_disc", "C")])
def test_dropping_a_discriminator_removes_its_net_optimiser_checkpoint_entry_and_loss_terms(
        tmp_path, flag, dropped, kept, prefix):
    cfg, spec = _parsed(train_adversarial, flag, "--save_root", str(tmp_path), "--modelName", "abl")
    assert getattr(cfg, f"use_{dropped}") is False and getattr(cfg, f"use_{kept}") is True
    run = build_run(cfg, spec)
    assert getattr(run.nets, dropped) is None and getattr(run.nets, kept) is not None
    assert set(run.optims) == {"generator", kept} == set(run.schedulers) == set(run.ctx.scalers)
    ckpt = checkpoint_of(run)
    assert dropped not in ckpt and kept in ckpt and "generator" in ckpt
    assert dropped not in ckpt["optimizers"] and dropped not in ckpt["disc_args"] and dropped not in ckpt["scalers"]
    batch = to_device(next(iter(run.train_loader)), run.ctx)
    stats = train_step(run.nets, run.optims, batch, run.ctx, error_loss_params(run.cfg), adversarial_params(run.cfg))
    assert not any(k.startswith((f"L_{prefix}", f"{prefix}_", f"{prefix.lower()}_fake")) for k in stats)
    other = "C" if prefix == "P" else "P"
    assert {f"L_{other}_fake", f"L_{other}_real", f"L_{other}_gen", f"{other}_fake", f"{other}_real"} <= set(stats)
    beta_or_alpha = cfg.beta if other == "P" else cfg.alpha
    torch.testing.assert_close(stats["loss_G"], stats["loss_mse"] + beta_or_alpha * stats[f"L_{other}_gen"])


def test_pretrained_single_task_checkpoint_initialises_a_multi_task_g(tmp_path):
    """Single (supervised, no occlusion) -> Multi+Dis: shared weights copied, occlusion modules left fresh."""
    single_cfg = tiny_config({"predict_occlusion": False, "method": "supervised"})
    torch.manual_seed(1)
    single = build_nets(single_cfg, J)[0].generator
    path = tmp_path / "single.pt"
    torch.save({"generator": single.state_dict(), "model_args": generator_args(single_cfg, J)}, path)
    multi = _tiny_nets(tiny_config()).generator
    ckpt = load_checkpoint(str(path))
    check_pretrained(ckpt, multi.state_dict())
    fresh = load_pretrained(multi, ckpt)
    assert fresh and all("occlusion" in k for k in fresh)
    own = multi.state_dict()
    assert all(torch.equal(own[k], v) for k, v in single.state_dict().items())


# ---- a short run end to end -------------------------------------------------------------------------------

LOGGED = ("loss_mse", "loss_G", "L_P_real", "L_P_fake", "L_P_gen", "L_C_real", "L_C_fake", "L_C_gen",
          "P_real", "P_fake", "C_real", "C_fake", "p_fake_ones", "c_fake_ones", "val_mean")


def _adversarial(tmp_path, name: str, *extra) -> dict:
    return train_adversarial.main(["--config", "config.tiny", "--dataset", "synthetic", "--save_root", str(tmp_path),
                                   "--modelName", name, "--device", "cpu", *extra])


def _check_run(run_dir, epochs: int) -> list[dict]:
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == list(range(epochs))
    for rec in log:
        missing = set(LOGGED) - set(rec)
        assert not missing, f"log lacks {missing}"
        for k in LOGGED:  # NaN/inf are written as null
            assert isinstance(rec[k], float | int) and math.isfinite(rec[k]), (rec["epoch"], k, rec[k])
        for k in ("P_real", "P_fake", "C_real", "C_fake", "p_fake_ones", "c_fake_ones"):
            assert 0.0 <= rec[k] <= 1.0, (k, rec[k])
    ckpt = load_checkpoint(str(run_dir / "best.pt"))
    assert ckpt["method"] == "adversarial"
    for name in ("generator", "pose_disc", "conf_disc"):
        assert ckpt[name], name
        opt = ckpt["optimizers"][name]
        assert opt["state"], f"{name} optimiser has no state: never stepped?"
    assert set(ckpt["disc_args"]) == {"pose_disc", "conf_disc"} and ckpt["model_args"]["num_joints"] == J
    return log


def test_short_adversarial_run_then_test_py(tmp_path):
    val = _adversarial(tmp_path, "adv", "--epochs", "2")
    run = tmp_path / "adv"
    assert {"last.pt", "best.pt", "log.jsonl", "config.json"} <= {p.name for p in run.iterdir()}
    log = _check_run(run, 2)
    assert log[-1]["val_mean"] == pytest.approx(val["mean"])
    assert load_checkpoint(str(run / "last.pt"))["state"]["epoch"] == 2

    out = tmp_path / "test"
    result = test_entry.main(["--checkpoint", str(run / "best.pt"), "--dataset", "synthetic", "--output", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mean"] == pytest.approx(result["mean"])
    assert result["mean"] == pytest.approx(max(r["val_mean"] for r in log))  # best.pt's own validation
    assert (out / "predictions.h5").exists()


def test_adversarial_run_from_a_supervised_checkpoint(tmp_path):
    train_supervised.main(["--config", "config.tiny", "--dataset", "synthetic", "--save_root", str(tmp_path),
                           "--modelName", "sup", "--device", "cpu"])
    sup = load_checkpoint(str(tmp_path / "sup" / "best.pt"))
    # G starts from the supervised weights (checked on the run the entry script builds)
    cfg, spec = _parsed(train_adversarial, "--pretrained", str(tmp_path / "sup" / "best.pt"),
                        "--save_root", str(tmp_path), "--modelName", "check")
    assert cfg.pretrained == str(tmp_path / "sup" / "best.pt")
    own = build_run(cfg, spec).nets.generator.state_dict()
    assert all(torch.equal(own[k], v) for k, v in sup["generator"].items())

    _adversarial(tmp_path, "adv", "--epochs", "1", "--pretrained", str(tmp_path / "sup" / "best.pt"))
    _check_run(tmp_path / "adv", 1)
    out = tmp_path / "test"
    test_entry.main(["--checkpoint", str(tmp_path / "adv" / "best.pt"), "--dataset", "synthetic",
                     "--output", str(out)])
    assert (out / "metrics.json").exists()
