"""Shape, parameter, gradient and memory-format checks for G, P and C (tiny sizes)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models import (
    HeatmapDiscriminator,
    StackedHourglass,
    build_generator,
    conf_disc_input,
    confidence_discriminator,
    count_parameters,
    pose_disc_input,
    pose_discriminator,
)

J = 5


@pytest.mark.parametrize(
    ("stacks", "channels", "depth", "size", "occlusion"),
    [
        (1, 8, 2, 32, False),
        (2, 16, 4, 256, True),
        (2, 16, 4, 128, False),
        (3, 12, 3, 64, True),
    ],
)
def test_generator_output_shapes(stacks, channels, depth, size, occlusion):
    torch.manual_seed(0)
    model = StackedHourglass(J, stacks, channels, depth=depth, predict_occlusion=occlusion)
    out = model(torch.randn(2, 3, size, size))
    assert len(out["pose"]) == stacks
    assert all(p.shape == (2, J, size // 4, size // 4) for p in out["pose"])
    if occlusion:
        assert len(out["occlusion"]) == stacks
        assert all(o.shape == (2, J, size // 4, size // 4) for o in out["occlusion"])
    else:
        assert out["occlusion"] is None


def test_generator_rejects_bad_input_size():
    model = StackedHourglass(J, 1, 8, depth=2)
    with pytest.raises(ValueError, match="divisible by 16"):
        model(torch.randn(1, 3, 40, 40))


def test_occlusion_adds_exactly_its_heads_and_merges():
    stacks, channels = 3, 16
    pose_only = StackedHourglass(J, stacks, channels, depth=2)
    multi = StackedHourglass(J, stacks, channels, depth=2, predict_occlusion=True)
    assert not any("occlusion" in name for name, _ in pose_only.named_modules())
    heads = stacks * (channels * J + J)  # 1x1 conv C -> J per stack
    merges = (stacks - 1) * (J * channels + channels)  # 1x1 conv J -> C between stacks
    assert count_parameters(multi) - count_parameters(pose_only) == heads + merges > 0


def test_build_generator_round_trip_and_unknown_keys():
    args = {
        "num_joints": J,
        "num_stacks": 2,
        "channels": 8,
        "depth": 2,
        "predict_occlusion": True,
    }
    model = build_generator(args)
    assert isinstance(model, StackedHourglass) and model.predict_occlusion
    with pytest.raises(ValueError, match="stackz"):
        build_generator({**args, "stackz": 3})
    with pytest.raises(ValueError, match="num_joints"):
        build_generator({"num_stacks": 2})


def test_every_generator_parameter_gets_gradient():
    torch.manual_seed(0)
    model = StackedHourglass(J, 3, 8, depth=2, predict_occlusion=True)
    out = model(torch.randn(2, 3, 32, 32))
    loss = sum(p.square().mean() for p in out["pose"]) + sum(o.square().mean() for o in out["occlusion"])
    loss.backward()
    # every parameter is in the graph; a conv bias right before BatchNorm has an exactly zero true
    # gradient (BN removes the mean), so only weights must get a non-zero one
    assert all(p.grad is not None for p in model.parameters())
    missing = [n for n, p in model.named_parameters() if n.endswith("weight") and not p.grad.abs().sum() > 0]
    assert not missing


def test_adam_step_lowers_mse():
    torch.manual_seed(0)
    model = StackedHourglass(J, 2, 8, depth=2)
    x, target = torch.randn(4, 3, 32, 32), torch.rand(4, J, 8, 8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss_fn():
        return sum(F.mse_loss(p, target) for p in model(x)["pose"])

    before = loss_fn()
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        assert loss_fn().item() < before.item()


def test_channels_last_matches_contiguous():
    torch.manual_seed(0)
    model = StackedHourglass(J, 2, 8, depth=2, predict_occlusion=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    for key in ("pose", "occlusion"):
        for a, b in zip(ref[key], cl[key], strict=True):
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)


def test_generator_and_discriminators_run_under_bf16_autocast():
    torch.manual_seed(0)
    model = StackedHourglass(J, 2, 8, depth=2, predict_occlusion=True)
    disc = pose_discriminator(J, channels=8, depth=2)
    x = torch.randn(2, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        prob = disc(pose_disc_input(x, out["pose"][-1], out["occlusion"][-1]))
    assert out["pose"][-1].shape == (2, J, 8, 8) and prob.shape == (2, J)


@pytest.mark.parametrize("occlusion", [True, False])
@pytest.mark.parametrize("size", [16, 32])
def test_discriminators_output_probabilities(occlusion, size):
    torch.manual_seed(0)
    image = torch.randn(3, 3, 4 * size, 4 * size)
    pose = torch.randn(3, J, size, size)
    occ = torch.randn(3, J, size, size) if occlusion else None
    p_disc = pose_discriminator(J, use_occlusion=occlusion, channels=8, depth=3)
    c_disc = confidence_discriminator(J, use_occlusion=occlusion, channels=8, depth=3)
    p_in, c_in = pose_disc_input(image, pose, occ), conf_disc_input(pose, occ)
    assert p_in.shape == (3, 3 + J * (2 if occlusion else 1), size, size)
    assert c_in.shape == (3, J * (2 if occlusion else 1), size, size)
    for disc, inp in ((p_disc, p_in), (c_disc, c_in)):
        prob = disc(inp)
        assert prob.shape == (3, J)
        assert ((prob >= 0) & (prob <= 1)).all()
        torch.testing.assert_close(prob, torch.sigmoid(disc.forward_logits(inp)))


def test_pose_discriminator_channels():
    assert pose_discriminator(16).in_channels == 3 + 2 * 16
    assert pose_discriminator(16, use_occlusion=False).in_channels == 3 + 16
    assert confidence_discriminator(16).in_channels == 2 * 16
    assert isinstance(confidence_discriminator(16, use_occlusion=False), HeatmapDiscriminator)


def test_discriminator_rejects_bad_input():
    disc = HeatmapDiscriminator(4, J, channels=8, depth=2)
    with pytest.raises(ValueError, match="input channels"):
        disc(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="divisible by 4"):
        disc(torch.randn(1, 4, 18, 18))
