"""Supervised baseline end to end: presets, one step, a tiny run + test.py, resume, CPU loading."""

import dataclasses
import json

import pytest
import torch

import test as test_entry
import train_supervised
from checkpoint import load_checkpoint
from config import PRESETS, load_config
from models import build_generator
from training.build import generator_args
from training.losses import heatmap_mse
from training.run import RunSpec, build_run
from training.state import TrainState
from training.steps import ErrorLoss, StepContext, supervised_step


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_builds_and_has_the_right_output_shapes(preset):
    cfg = load_config(preset)
    g = build_generator(generator_args(cfg, 16)).eval()
    res = cfg.input_res if cfg.channels <= 256 else 64  # the 512-channel paper G: check shapes on a small input
    with torch.no_grad():
        out = g(torch.zeros(1, 3, res, res))
    side = res // 4
    assert len(out["pose"]) == cfg.num_stacks
    assert all(p.shape == (1, 16, side, side) for p in out["pose"])
    assert (out["occlusion"] is not None) == cfg.predict_occlusion
    assert cfg.output_res == cfg.input_res // 4


def test_paper_and_newell_presets_match_their_papers():
    paper, newell = load_config("default_config"), load_config("newell8")
    assert (paper.num_stacks, paper.channels, paper.input_res, paper.output_res) == (4, 512, 256, 64)
    assert (paper.rotation, paper.scale_min, paper.scale_max, paper.flip) == (30.0, 0.75, 1.25, True)
    assert (paper.optimizer, paper.lr) == ("RMSprop", 2.5e-4)
    assert paper.alpha == pytest.approx(1 / 220) and paper.beta == pytest.approx(1 / 180)
    assert (paper.g_error_step, paper.g_adv_form) == (True, "paper")  # Algorithm 1's step 1; Eq. 4 as written
    assert (newell.num_stacks, newell.channels) == (8, 256)


def test_one_step_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    cfg = load_config("tiny")
    g = build_generator(generator_args(cfg, 16))
    opt = torch.optim.Adam(g.parameters(), lr=1e-3)
    ctx = StepContext(torch.device("cpu"), None, {"generator": torch.amp.GradScaler("cpu", enabled=False)}, 0.0,
                      False)
    hm = torch.zeros(4, 16, 16, 16)
    hm[:, :, 8, 8] = 1.0
    batch = {"image": torch.randn(4, 3, 64, 64), "heatmaps": hm, "occlusion": torch.zeros_like(hm),
             "annotated": torch.ones(4, 16)}
    first = supervised_step(g, opt, batch, ctx, ErrorLoss(0.0, "pixel_mean"))["loss_mse"]
    for _ in range(3):
        last = supervised_step(g, opt, batch, ctx, ErrorLoss(0.0, "pixel_mean"))["loss_mse"]
    assert last < first


def test_heatmap_mse_masks_joints_and_weights_foreground_pixels():
    target = torch.zeros(1, 2, 4, 4)
    target[0, :, 1, 1] = 1.0
    zero = [torch.zeros_like(target)]
    one_mask = torch.tensor([[1.0, 0.0]])  # the second joint is unlabelled: ignored
    assert heatmap_mse(zero, target, one_mask, 0.0, "pixel_mean").item() == pytest.approx(1 / 16)
    summed = heatmap_mse(zero * 2, target, one_mask, 0.0, "pixel_mean")
    assert summed.item() == pytest.approx(2 / 16)  # summed over stacks
    # a foreground pixel (target 1) weighs 1 + w, a background pixel (target 0) stays at 1
    assert heatmap_mse(zero, target, one_mask, 9.0, "pixel_mean").item() == pytest.approx(10 / 16)
    off = [target.roll(1, dims=-1)]  # 1 on a background pixel, 0 on the foreground one
    assert heatmap_mse(off, target, one_mask, 9.0, "pixel_mean").item() == pytest.approx((10 + 1) / 16)


def test_bf16_on_a_cpu_without_native_bf16_gets_a_note(monkeypatch):
    import runtime.device as rt

    cpu = torch.device("cpu")
    monkeypatch.setattr(rt, "cpu_has_native_bf16", lambda: False)
    assert rt.autocast_dtype("auto", cpu) is None and rt.autocast_dtype("bf16", cpu) == torch.bfloat16
    assert "--amp off" in rt.precision_note(torch.bfloat16, cpu)
    assert rt.precision_note(None, cpu) is None
    monkeypatch.setattr(rt, "cpu_has_native_bf16", lambda: True)
    assert rt.precision_note(torch.bfloat16, cpu) is None


def _train(tmp_path, *extra):
    return train_supervised.main(["--config", "config.tiny", "--dataset", "synthetic", "--device", "cpu",
                                  "--save_root", str(tmp_path), "--modelName", "run", *extra])


def test_tiny_run_then_test_py_writes_checkpoints_log_and_metrics(tmp_path):
    val = _train(tmp_path)
    run = tmp_path / "run"
    assert {"last.pt", "best.pt", "log.jsonl", "config.json", "curves.png"} <= {p.name for p in run.iterdir()}
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0]
    assert {"loss_mse", "val_mean", "lr", "images_per_s"} <= set(log[0])
    assert log[0]["val_mean"] == pytest.approx(val["mean"])
    saved_cfg = json.loads((run / "config.json").read_text())
    assert saved_cfg["num_stacks"] == 2 and saved_cfg["input_res"] == 64

    out = tmp_path / "test"
    result = test_entry.main(["--checkpoint", str(run / "best.pt"), "--dataset", "synthetic", "--output", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metric"] == "PCKh@0.5" and metrics["mean"] == pytest.approx(result["mean"])
    assert metrics["mean"] == pytest.approx(val["mean"])  # same model, same split, same flip test
    assert (out / "predictions.h5").exists() and any((out / "pictures").iterdir())


def test_header_counts_the_images_the_run_uses(tmp_path, capsys):
    """Once the full split sizes (16 / 8 for config.tiny) whatever --max_train_samples/--max_val_samples said."""
    _train(tmp_path, "--max_train_samples", "8", "--max_val_samples", "4")
    assert "| 8 (of 16) train / 4 (of 8) val images" in capsys.readouterr().out
    _train(tmp_path, "--modelName", "full", "--max_val_samples", "100")  # a limit above the size limits nothing
    assert "| 16 train / 8 val images" in capsys.readouterr().out


def test_resume_continues_from_the_saved_epoch_and_keeps_snapshots(tmp_path):
    _train(tmp_path, "--set", "snapshot_epochs=[2]")
    ckpt = load_checkpoint(str(tmp_path / "run"))
    assert ckpt["state"]["epoch"] == 1
    _train(tmp_path, "--resume", str(tmp_path / "run"), "--epochs", "3")
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1, 2]
    assert load_checkpoint(str(tmp_path / "run" / "last.pt"))["state"]["epoch"] == 3
    assert sorted(p.name for p in (tmp_path / "run").glob("epoch_*.pt")) == ["epoch_2.pt"]
    assert load_checkpoint(str(tmp_path / "run" / "epoch_2.pt"))["state"]["epoch"] == 2


def test_resume_on_fewer_processes_rescales_the_restored_lr(tmp_path, capsys):
    """A checkpoint saved by 2 processes (batch 4 each, lr_base_batch 4: lr x sqrt 2 for Adam) resumed on one
    trains on at the lr of a global batch of 4."""
    _train(tmp_path, "--set", "lr_base_batch=4", "--set", "optimizer=Adam", "--set", "lr=1e-3")
    path = tmp_path / "run" / "last.pt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["world_size"] = 2
    for group in ckpt["optimizers"]["generator"]["param_groups"]:
        group["lr"] = group["initial_lr"] = 1e-3 * 2 ** 0.5
    ckpt["schedulers"]["generator"]["base_lrs"] = [1e-3 * 2 ** 0.5]
    torch.save(ckpt, path)
    capsys.readouterr()
    _train(tmp_path, "--resume", str(tmp_path / "run"), "--epochs", "2")
    out = capsys.readouterr()
    assert "global batch of 8 resumed at 4: learning rates rescaled" in out.out + out.err
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[1]["lr"] == pytest.approx(1e-3)


def test_checkpoint_saved_on_cuda_loads_on_cpu(tmp_path):
    """Tag every storage as cuda:0 while saving (as a GPU run would), then load on this CPU-only machine."""
    cfg = load_config("tiny")
    g = build_generator(generator_args(cfg, 16))
    ckpt = {"generator": g.state_dict(), "model_args": generator_args(cfg, 16), "config": cfg.to_dict()}

    def as_cuda(obj):
        return "cuda:0" if getattr(obj, "device", None) is not None and obj.device.type == "cpu" else None

    registry = torch.serialization._package_registry
    registry.insert(0, (-1, as_cuda, lambda obj, loc: None))
    try:
        torch.save(ckpt, tmp_path / "gpu.pt")
    finally:
        registry[:] = [entry for entry in registry if entry[1] is not as_cuda]
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "gpu.pt", weights_only=False)
    loaded = load_checkpoint(str(tmp_path / "gpu.pt"))
    assert all(t.device.type == "cpu" for t in loaded["generator"].values())
    torch.testing.assert_close(loaded["generator"], g.state_dict())


def test_a_run_is_built_once_and_only_its_state_changes(tmp_path):
    """``build_run`` returns every object of the run; none can be swapped afterwards, the position can move."""
    spec = RunSpec(dataset="synthetic", path=None, train_split="train", val_split="val", run_dir=str(tmp_path / "r"),
                   device="cpu", max_train_samples=4, max_val_samples=2)
    run = build_run(load_config("tiny", {"method": "supervised"}), spec)
    assert run.train_loader is not None and run.val_loader is not None and run.guard.ctx is run.ctx
    for name, value in (("nets", None), ("state", TrainState()), ("run_id", "other")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(run, name, value)
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.ctx.grad_clip = 1.0
    run.state.iteration += 1
    assert run.state.position == (1, 0, 0)
