"""The default configuration is the paper's method as the paper states its intent (config/default_config.py):
the error loss at the scale where alpha and beta put the adversarial terms "at the same scale", P's fake
targets at the dataset metric's own threshold, and G's adversarial terms as Eq. 4 writes them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import adversarial_batch, tiny_config

import train_adversarial
from config import load_config, parse_overrides
from datasets import DATASETS
from datasets.skeleton import LSP, MPII
from training.build import adversarial_params, build_nets, resolve_for_dataset
from training.losses import generator_adversarial_term, heatmap_mse, masked_bce
from training.steps import adversarial_targets, adversarial_terms
from utils.heatmaps import draw_gaussians


def test_defaults_are_the_papers_stated_method():
    cfg = load_config("default_config")
    assert (cfg.alpha, cfg.beta) == (pytest.approx(1 / 220), pytest.approx(1 / 180))
    assert (cfg.mse_scale, cfg.g_adv_form, cfg.delta, cfg.g_error_step) == ("pixel_mean", "paper", None, True)
    # Eq. 1's literal scale stays available under its new name; the old name still reads (old runs' configs)
    assert parse_overrides(["mse_scale=paper"]) == {"mse_scale": "eq1_literal"}
    assert load_config("tiny", {"mse_scale": "paper"}).mse_scale == "eq1_literal"


def test_pixel_mean_puts_the_adversarial_terms_at_the_scale_of_the_error_loss():
    """The paper's G (16 joints, 64 x 64 maps at sigma 2, 4 stacks): the error loss of an all-zero prediction
    (where training starts) against alpha and beta times a fresh discriminator's BCE of ln 2."""
    cfg = load_config("default_config")
    joints = np.random.default_rng(0).uniform(8, 56, (2, 16, 2))  # heatmap px
    target = torch.from_numpy(np.stack([draw_gaussians(j, np.ones(16, bool), cfg.output_res, cfg.sigma)
                                        for j in joints]))
    mask, zeros = torch.ones(2, 16), [torch.zeros_like(target)] * cfg.num_stacks
    adversarial = math.log(2) * cfg.alpha, math.log(2) * cfg.beta
    pixel = heatmap_mse(zeros, target, mask, 0.0, "pixel_mean").item()
    literal = heatmap_mse(zeros, target, mask, 0.0, "eq1_literal").item()
    assert all(0.1 < a / pixel < 10 for a in adversarial)  # same order of magnitude
    assert all(a / literal < 1e-4 for a in adversarial)  # negligible beside Eq. 1 as printed
    assert literal / pixel == pytest.approx(16 * 64 * 64 / (2 * cfg.num_stacks))


@pytest.mark.parametrize(("dataset", "spec", "delta"), [("mpii", MPII, 0.5), ("synthetic", MPII, 0.5),
                                                        ("lsp", LSP, 0.2), ("lspet", LSP, 0.2)])
def test_delta_follows_the_metric_of_the_dataset(dataset, spec, delta):
    assert DATASETS[dataset].spec is spec
    assert resolve_for_dataset(load_config("tiny"), DATASETS[dataset].spec).delta == delta
    assert resolve_for_dataset(load_config("tiny", {"delta": 0.3}), DATASETS[dataset].spec).delta == 0.3  # set: kept


def test_an_unresolved_delta_is_refused_and_a_bad_one_named():
    with pytest.raises(ValueError, match="resolve the config for its dataset"):
        adversarial_params(load_config("tiny"))
    assert parse_overrides(["delta=None"]) == {"delta": None}
    for bad, expected in (("delta=abc", "number or None"), ("delta=-1", "outside its range"),
                          ("delta=True", "number or None")):
        with pytest.raises(Exception, match=expected):
            parse_overrides([bad])


def test_a_run_on_lspet_records_the_pck_threshold(tmp_path, lspet_root):
    train_adversarial.main(["--dataset", "lspet", "--path", lspet_root, "--config", "config.tiny", "--device", "cpu",
                            "--save_root", str(tmp_path), "--model_name", "run", "--max_train_samples", "8",
                            "--max_val_samples", "4"])
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["delta"] == 0.2 and saved["g_adv_form"] == "paper" and saved["mse_scale"] == "pixel_mean"
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert ckpt["config"]["delta"] == 0.2


# ---- G's adversarial term: Eq. 4 as written, and the non-saturating substitute ---------------------------


def _term_and_grad(logits: torch.Tensor, fake: torch.Tensor, mask: torch.Tensor, form: str):
    x = logits.clone().requires_grad_(True)
    value = generator_adversarial_term(x, fake, mask, form)
    value.backward()
    return value.item(), x.grad


def test_paper_form_is_log_one_minus_the_discriminators_error_on_a_hand_made_case():
    """Three scored joints: D says 0.8 "real" on a fake joint (p_fake 0), 0.8 on a real one (p_fake 1), 0.3 on
    a fake one; a fourth joint is not scored. Eq. 4's G part: mean of log(1 - |D - fake|)."""
    d = torch.tensor([[0.8, 0.8, 0.3, 0.5]])
    logits, fake, mask = torch.log(d / (1 - d)), torch.tensor([[0.0, 1.0, 0.0, 1.0]]), torch.tensor([[1., 1., 1., 0.]])
    value, grad = _term_and_grad(logits, fake, mask, "paper")
    assert value == pytest.approx((math.log(0.2) + math.log(0.8) + math.log(0.7)) / 3, rel=1e-5)
    # gradient descent on the term: up ("real") where the joint is fake, down ("fake") where it is real
    assert grad[0, 0] < 0 and grad[0, 2] < 0 and grad[0, 1] > 0 and grad[0, 3] == 0
    # d/dlogit log(1 - |sigmoid - fake|) = -(sigmoid - fake), over the 3 scored joints
    torch.testing.assert_close(grad[0, :3], -(d[0, :3] - fake[0, :3]) / 3)


def test_nonsaturating_form_pushes_every_joint_towards_real():
    d = torch.tensor([[0.8, 0.8, 0.3, 0.5]])
    logits, fake, mask = torch.log(d / (1 - d)), torch.tensor([[0.0, 1.0, 0.0, 1.0]]), torch.tensor([[1., 1., 1., 0.]])
    value, grad = _term_and_grad(logits, fake, mask, "nonsaturating")
    assert value == pytest.approx(-(2 * math.log(0.8) + math.log(0.3)) / 3, rel=1e-5)
    assert (grad[0, :3] < 0).all() and grad[0, 3] == 0  # descent raises D(G(x)) on every scored joint
    torch.testing.assert_close(grad[0, :3], (d[0, :3] - 1) / 3)
    with pytest.raises(ValueError, match="unknown form"):
        generator_adversarial_term(logits, fake, mask, "minimax")


@pytest.mark.parametrize("form", ["paper", "nonsaturating"])
def test_g_adv_form_chooses_the_term_g_descends(form):
    """Through the networks: the step's L_P and L_C on G's last stack equal the form's term computed by hand
    with the fake targets P and C learn from."""
    from models import conf_disc_input, pose_disc_input

    cfg = tiny_config({"g_adv_form": form})
    torch.manual_seed(0)
    nets, _ = build_nets(cfg, 16)
    b = adversarial_batch()
    out = nets.generator(b["image"])
    terms = adversarial_terms(nets, out, b, adversarial_params(cfg))
    pose, occ = out["pose"][-1], out["occlusion"][-1]
    p_fake, c_fake, p_mask = adversarial_targets(pose.detach(), b, cfg.delta, cfg.epsilon, cfg.input_res)
    p_logits = nets.pose_disc(pose_disc_input(b["image"], pose, occ), logits=True)
    c_logits = nets.conf_disc(conf_disc_input(pose, occ), logits=True)
    if form == "paper":
        want_p, want_c = -masked_bce(p_logits, p_fake, p_mask), -masked_bce(c_logits, c_fake, b["annotated"])
    else:
        want_p, want_c = masked_bce(p_logits, 1.0, b["annotated"]), masked_bce(c_logits, 1.0, b["annotated"])
    torch.testing.assert_close(terms["L_P_gen"], want_p)
    torch.testing.assert_close(terms["L_C_gen"], want_c)
    assert (terms["L_P_gen"].item() < 0) is (form == "paper")  # log(1 - |D - fake|) < 0; -log D > 0
