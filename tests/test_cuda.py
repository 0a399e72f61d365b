"""The CUDA path (marker ``cuda``; skipped without a CUDA device; ``scripts/gpu-acceptance.sh`` runs them):
G, P and C forward and backward in fp32, bf16 and fp16, channels_last, torch.compile, a checkpoint moved
between CUDA and CPU, exact resume, flip-test predictions equal on CPU and CUDA, and the trainer under a
one-GPU NCCL process group (with SyncBatchNorm and torch.compile).

Tolerances (stated here, checked below), as relative errors ||got - expected|| / ||expected|| over a whole
output or over all gradients of a network:
- fp32 on CUDA with TF32 off (``strict_fp32``) against fp32 on CPU: 1e-4 on outputs;
- bf16 / fp16 autocast against fp32 on CPU: 0.15 / 0.03 on outputs (the untrained tiny G in train mode gives
  0.06 / 0.011 on a CPU; P and C a fifth of that);
- channels_last against NCHW, compiled against eager: 1e-4 on outputs, 1e-3 on gradients;
- resume on CUDA (deterministic=True, fp32): weights within 1e-5 absolute + 1e-4 relative of the
  uninterrupted run (bit-exact is expected with deterministic kernels, not required);
- flip-test heatmaps on CPU and CUDA (fp32, TF32 off): 1e-4 absolute; decoded joints identical for at least
  98% of the joints (an argmax between two near-equal pixels may go either way) and the PCK within 1 point.

``POSE_CUDA_TESTS_DEVICE=cpu python -m pytest -m cuda tests/test_cuda.py`` runs the same checks on the CPU
(every CUDA-vs-CPU comparison then compares the CPU with itself): a check of the tests, not of a GPU.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, synthetic_spec, tiny_cfg, tiny_config

from checkpoint import load_checkpoint
from config import load_config
from datasets import build_dataset
from inference.evaluate import evaluate, inference_settings, make_eval_loader
from inference.predict import predict_heatmaps
from inference.weights import generator_from_checkpoint
from runtime.device import autocast, autocast_dtype, cpu_has_native_bf16, place_images, strict_fp32
from training.build import adversarial_params, build_nets, build_optimizers, error_loss_params
from training.loop import fit
from training.run import build_run
from training.spec import RunSpec
from training.steps import StepContext, adversarial_step, raw_module, to_device

DEVICE = torch.device(os.environ.get("POSE_CUDA_TESTS_DEVICE", "cuda"))
CPU = torch.device("cpu")
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(), reason="needs CUDA")]
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
OUTPUT_TOLERANCE = {"fp32": 1e-4, "bf16": 0.15, "fp16": 0.03}


def _relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    got, expected = got.detach().float().cpu(), expected.detach().float().cpu()
    return float((got - expected).norm() / expected.norm().clamp_min(1e-30))


def _gradients(module: torch.nn.Module) -> torch.Tensor:
    """Every parameter's gradient, flattened into one vector (zeros where a parameter got none)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().float().cpu().flatten()
                      for p in module.parameters()])


@pytest.fixture(autouse=True)
def _true_fp32():
    """TF32 off while a test runs (fp32 comparisons against the CPU need it; autocast is unaffected)."""
    with strict_fp32():
        yield


@pytest.fixture(scope="module")
def deterministic_reset():
    """Runs with deterministic=True switch deterministic algorithms on for the process: undo it."""
    yield
    torch.use_deterministic_algorithms(False)


def _batch(cfg, size: int = 4) -> dict:
    data = build_dataset("synthetic", None, "train", cfg, train=True)
    return next(iter(torch.utils.data.DataLoader(data, batch_size=size)))


def _outputs(nets, b: dict, dtype) -> dict[str, torch.Tensor]:
    """G's last pose stack, P's and C's logits on the truth (B, J), in fp32."""
    from models import conf_disc_input, pose_disc_input

    with autocast(b["image"].device, dtype):
        out = {"G": nets.generator(b["image"])["pose"][-1],
               "P": nets.pose_disc(pose_disc_input(b["image"], b["heatmaps"], b["occlusion"]), logits=True),
               "C": nets.conf_disc(conf_disc_input(b["heatmaps"], b["occlusion"]), logits=True)}
    return {k: v.float() for k, v in out.items()}


@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_g_p_c_forward_and_backward(precision):
    """Outputs of G, P and C on the device agree with fp32 on the CPU; one step of Algorithm 1 in this
    precision (fp16 with a GradScaler per optimiser) changes every network and leaves everything finite."""
    dtype = PRECISIONS[precision]
    torch.manual_seed(0)
    cfg = tiny_config({"method": "adversarial"})
    cpu_nets, _ = build_nets(cfg, 16)
    nets = copy.deepcopy(cpu_nets)
    for name, net in nets.named().items():
        setattr(nets, name, net.to(DEVICE))
    b = _batch(cfg)
    expected = _outputs(cpu_nets, b, None)
    ctx = StepContext(DEVICE, dtype, {k: torch.amp.GradScaler(DEVICE.type, enabled=dtype == torch.float16)
                                      for k in ("generator", "pose_disc", "conf_disc")}, 0.0, False)
    got = _outputs(nets, to_device(b, ctx), dtype)
    for k in expected:
        error = _relative_error(got[k], expected[k])
        assert error <= OUTPUT_TOLERANCE[precision], f"{k} in {precision}: relative error {error:.3g}"
    before = {k: [p.detach().clone() for p in n.parameters()] for k, n in nets.named().items()}
    opts = build_optimizers(nets, cfg, DEVICE)
    # fp16: a GradScaler skips every update whose gradients overflow and halves its scale (from 2**16); G's
    # Eq. 1 loss is ~700 here, so its first updates overflow (on a CPU 4 steps pass before one counts). The
    # other precisions change every network in the first step.
    steps, changed = 0, {"none yet": False}
    while steps < (16 if dtype == torch.float16 else 1) and not all(changed.values()):
        steps += 1
        stats = adversarial_step(nets, opts, to_device(b, ctx), ctx, error_loss_params(cfg), adversarial_params(cfg))
        assert all(torch.isfinite(v).all() for v in stats.values()), stats
        changed = {k: any(not torch.equal(p, q) for p, q in zip(net.parameters(), before[k], strict=True))
                   for k, net in nets.named().items()}
    for k, net in nets.named().items():
        assert all(torch.isfinite(p).all() for p in net.parameters()), f"{k}: non-finite weights"
        assert changed[k], f"{k} did not change in {steps} steps"


def test_channels_last_equals_nchw():
    torch.manual_seed(0)
    cfg = load_config("tiny")
    nets, _ = build_nets(cfg.with_overrides({"method": "supervised"}), 16)
    g = nets.generator.to(DEVICE).eval()  # fixed BN statistics: well-conditioned gradients at random init
    nhwc = copy.deepcopy(g).to(memory_format=torch.channels_last)
    image = _batch(cfg)["image"].to(DEVICE)
    plain = g(image)["pose"][-1]
    last = nhwc(place_images(image, DEVICE, channels_last=True))["pose"][-1]
    assert _relative_error(last, plain) <= 1e-4
    plain.square().mean().backward()
    last.square().mean().backward()
    assert _relative_error(_gradients(nhwc), _gradients(g)) <= 1e-3


def test_compiled_generator_equals_eager():
    torch.manual_seed(0)
    cfg = load_config("tiny")
    nets, _ = build_nets(cfg.with_overrides({"method": "supervised"}), 16)
    g = nets.generator.to(DEVICE).eval()  # fixed BN statistics: well-conditioned gradients at random init
    compiled = torch.compile(copy.deepcopy(g))
    image = _batch(cfg)["image"].to(DEVICE)
    eager_out, compiled_out = g(image)["pose"][-1], compiled(image)["pose"][-1]
    assert _relative_error(compiled_out, eager_out) <= 1e-4
    eager_out.square().mean().backward()
    compiled_out.square().mean().backward()
    assert _relative_error(_gradients(raw_module(compiled)), _gradients(g)) <= 1e-3


def _spec(run_dir, device: torch.device = DEVICE, **extra) -> RunSpec:
    return synthetic_spec(run_dir, **{"device": str(device), "max_val_samples": 8, **extra})


def _cfg(**extra):
    return tiny_cfg(**{"amp": "off", "epochs": 2, **extra})


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory, deterministic_reset):
    """A tiny supervised run trained on the device for 2 epochs (deterministic kernels, fp32)."""
    run_dir = tmp_path_factory.mktemp("cuda") / "run"
    with strict_fp32():
        run = build_run(_cfg(deterministic=True), _spec(run_dir))
        fit(run)
    return run_dir, {k: v.detach().cpu() for k, v in raw_module(run.nets.generator).state_dict().items()}


def test_checkpoint_saved_on_cuda_loads_on_cpu_and_back(cuda_run, tmp_path):
    run_dir, weights = cuda_run
    ckpt = load_checkpoint(str(run_dir / "last.pt"))
    assert all(v.device == CPU for v in ckpt["generator"].values())
    _, g_cpu = generator_from_checkpoint(ckpt)
    for k, v in g_cpu.state_dict().items():
        assert torch.equal(v, weights[k]), k
    g_dev = copy.deepcopy(g_cpu).to(DEVICE).eval()
    image = _batch(_cfg())["image"]
    with torch.no_grad():
        torch.testing.assert_close(g_dev(image.to(DEVICE))["pose"][-1].cpu(), g_cpu.eval()(image)["pose"][-1],
                                   atol=1e-4, rtol=1e-4)
    for name, device in (("on-cpu", CPU), ("on-device", DEVICE)):  # resumes on the CPU, and back on the device
        target = tmp_path / name
        target.mkdir()
        (target / "last.pt").write_bytes((run_dir / "last.pt").read_bytes())
        resumed = build_run(_cfg(epochs=3), _spec(target, device, resume=str(target)))
        assert resumed.state.epoch == 2 and next(resumed.nets.generator.parameters()).device.type == device.type
        fit(resumed)
        assert resumed.state.epoch == 3


def test_exact_resume_on_cuda(cuda_run, tmp_path, deterministic_reset):
    run_dir, weights = cuda_run
    half = tmp_path / "half"
    fit(build_run(_cfg(deterministic=True, epochs=1), _spec(half)))
    run = build_run(_cfg(deterministic=True), _spec(half, resume=str(half)))
    fit(run)
    for k, v in raw_module(run.nets.generator).state_dict().items():
        torch.testing.assert_close(v.cpu(), weights[k], atol=1e-5, rtol=1e-4, msg=lambda m, k=k: f"{k}: {m}")


def test_flip_test_predictions_equal_on_cpu_and_cuda(cuda_run):
    run_dir, _ = cuda_run
    cfg, g = generator_from_checkpoint(load_checkpoint(str(run_dir / "last.pt")))
    val = build_dataset("synthetic", None, "val", cfg, train=False)
    results, heatmaps = {}, {}
    for device in (CPU, DEVICE):
        net = copy.deepcopy(g).to(device).eval()
        settings = inference_settings(cfg, val.spec, device, flip=True)
        assert settings.flip_perm is not None and settings.dtype is None  # amp off: fp32 on both
        results[device.type] = evaluate(net, make_eval_loader(val, 4, 0), val, settings, device)
        images = next(iter(make_eval_loader(val, 4, 0)))["image"].to(device)
        with torch.no_grad():
            heatmaps[device.type] = predict_heatmaps(net, images, settings.flip_perm, device, None).cpu()
    cpu, dev = results["cpu"], results[DEVICE.type]
    torch.testing.assert_close(heatmaps[DEVICE.type], heatmaps["cpu"], atol=1e-4, rtol=0)
    np.testing.assert_array_equal(cpu["index"], dev["index"])
    same = np.all(np.isclose(cpu["preds"], dev["preds"], atol=1e-3), axis=-1)
    assert same.mean() >= 0.98, f"{same.mean():.3f} of the joints decode to the same place"
    assert abs(cpu["mean"] - dev["mean"]) <= 1.0


def test_amp_auto_fits_this_device():
    if DEVICE.type != "cuda":  # bf16 only where the CPU runs it natively
        assert autocast_dtype("auto", DEVICE) == (torch.bfloat16 if cpu_has_native_bf16() else None)
        return
    major, _ = torch.cuda.get_device_capability(DEVICE)
    assert autocast_dtype("auto", DEVICE) == (torch.bfloat16 if major >= 8 else torch.float16)


def test_trainer_under_a_one_gpu_nccl_process_group(tmp_path):
    """The multi-GPU set-up on one GPU: DDP under NCCL, with SyncBatchNorm and torch.compile on CUDA as the
    GPU presets and the DDP scripts use them (SyncBatchNorm has no CPU kernels, so not under gloo; where
    compile cannot work the trainer runs eager with one line, and the acceptance's compile probe says so)."""
    on_gpu = ["--set", "sync_bn=True", "--set", "compile=True"] if DEVICE.type == "cuda" else []
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--standalone",
           "train_supervised.py", "--config", "config.tiny", "--device", str(DEVICE), "--epochs", "1",
           "--max_train_samples", "16", "--max_val_samples", "8", "--save_root", str(tmp_path), "--modelName", "nccl",
           *on_gpu]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    backend = "nccl" if DEVICE.type == "cuda" else "gloo"
    assert f"1 process(es), {backend}" in done.stdout
    ckpt = load_checkpoint(str(tmp_path / "nccl"))
    assert ckpt["state"]["epoch"] == 1 and len(ckpt["rng_ranks"]) == 1
