"""The CUDA and multi-GPU paths that can be checked without a GPU: precision per compute capability, the
current CUDA device set before any CUDA work, and generator states across device and rank counts."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

import runtime.device as rt
import runtime.distributed as rd
from checkpoint import LOADED_FROM, rank_rng_state, rng_state, set_rng_state
from cli.training import device_flag, training_parser
from config import load_config
from models import build_generator
from runtime.distributed import DistInfo
from runtime.system import derived_seed, rank_seed
from training.build import generator_args
from training.run import RunSpec, build_run, checkpoint_of, restore
from training.state import resumed_state

CPU = torch.device("cpu")


# ---- precision ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("capability", "expected"), [((7, 0), torch.float16), ((7, 5), torch.float16),
                                                      ((8, 0), torch.bfloat16), ((8, 9), torch.bfloat16),
                                                      ((9, 0), torch.bfloat16)])
def test_amp_auto_picks_bf16_from_compute_capability_8_and_fp16_below(monkeypatch, capability, expected):
    seen = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: seen.append(device) or capability)
    gpu = torch.device("cuda", 1)
    assert rt.autocast_dtype("auto", gpu) == expected
    assert seen == [gpu]  # the capability of the training device, not of GPU 0
    assert rt.autocast_dtype("off", gpu) is None and rt.autocast_dtype("bf16", gpu) == torch.bfloat16
    name = rt.precision_name(expected, gpu, training=True)
    assert name == ("fp16 autocast + GradScaler per optimiser" if expected == torch.float16 else "bf16 autocast")
    # asked-for bf16 on a card without bf16 units is emulated: the run says so
    assert ("no native bf16" in (rt.precision_note(torch.bfloat16, gpu) or "")) == (capability[0] < 8)


@pytest.mark.parametrize(("native", "amp", "expected"), [(False, "auto", None), (True, "auto", torch.bfloat16),
                                                         (False, "bf16", torch.bfloat16), (True, "off", None),
                                                         (False, "fp16", torch.float16)])
def test_amp_on_cpu_is_bf16_only_where_the_cpu_runs_it_natively(native, amp, expected):
    precision = rt.choose_precision(amp, CPU, native_bf16=lambda: native)
    assert precision.dtype == expected
    if amp == "auto":  # the reason names the decision and this CPU's capability
        assert rt.cpu_capability() in precision.reason
        assert ("runs bf16 natively" if native else "has no native bf16") in precision.reason
    else:
        assert precision.reason == f"amp={amp} as set"


@pytest.mark.parametrize(("native", "amp", "header", "warned"), [
    (False, "auto", "fp32 (amp=auto: this CPU ({cap}) has no native bf16 (AVX512-BF16/AMX))", False),
    (True, "auto", "bf16 autocast (amp=auto: this CPU ({cap}) runs bf16 natively)", False),
    (False, "bf16", "bf16 autocast (amp=bf16 as set)", True)])
def test_first_log_line_names_the_precision_the_cpu_and_why(monkeypatch, tmp_path, capsys, native, amp, header,
                                                            warned):
    import train_supervised

    monkeypatch.setattr(rt, "cpu_has_native_bf16", lambda: native)
    train_supervised.main(["--config", "config.tiny", "--device", "cpu", "--save_root", str(tmp_path),
                           "--max_train_samples", "4", "--max_val_samples", "2", "--set", f"amp={amp}"])
    out = capsys.readouterr().out.splitlines()
    first = next(line for line in out if line.startswith("supervised |"))
    assert f"| device cpu | {header.format(cap=rt.cpu_capability())} |" in first
    # an explicit bf16 on a CPU without it still trains, with the warning
    assert any("no native bf16" in line and "--amp off" in line for line in out) == warned
    assert any(line.startswith("done:") for line in out)


def test_precision_names_for_logs(monkeypatch):
    assert rt.precision_name(None, CPU) == "fp32"
    assert rt.precision_name(torch.bfloat16, CPU, training=True) == "bf16 autocast"
    assert rt.precision_name(torch.float16, CPU) == "fp16 autocast"  # inference: no scaler
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    assert rt.precision_name(None, torch.device("cuda", 0)) == "fp32 (TF32 convolutions)"


def test_training_test_and_predict_name_the_precision(tmp_path, capsys):
    import json

    import cv2

    import predict
    import test as test_entry
    import train_supervised

    train_supervised.main(["--config", "config.tiny", "--device", "cpu", "--save_root", str(tmp_path),
                           "--max_train_samples", "4", "--max_val_samples", "2", "--set", "amp=bf16"])
    header = [line for line in capsys.readouterr().out.splitlines() if line.startswith("supervised |")]
    assert len(header) == 1 and "| device cpu | bf16 autocast (amp=bf16 as set) |" in header[0]
    ckpt = str(tmp_path / "run" / "last.pt")
    test_entry.main(["--checkpoint", ckpt, "--output", str(tmp_path / "t"), "--max_samples", "2", "--workers", "0",
                     "--amp", "off", "--num_pictures", "0"])
    assert "device cpu | fp32 | flip test on" in capsys.readouterr().out.splitlines()
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert (metrics["device"], metrics["precision"], metrics["flip_test"]) == ("cpu", "fp32", True)
    cv2.imwrite(str(tmp_path / "person.png"), np.full((80, 60, 3), 128, np.uint8))
    predict.main(["--checkpoint", ckpt, "--image", str(tmp_path / "person.png"), "--output", str(tmp_path / "p"),
                  "--no_flip"])
    assert capsys.readouterr().out.splitlines()[0] == "device cpu | bf16 autocast | flip test off"


# ---- the current CUDA device --------------------------------------------------------------------

@pytest.fixture
def fake_gpus(monkeypatch):
    """Four CUDA devices as far as device selection can tell; records every torch.cuda.set_device call."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: calls[-1] if calls else 0)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(d if isinstance(d, int) else d.index))
    for key in ("TORCHELASTIC_RUN_ID", "WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    return calls


@pytest.mark.parametrize(("flags", "index"), [(["--device", "cuda:2"], 2), (["--use_gpu", "1", "--gpu_device", "3"], 3),
                                              (["--device", "cuda"], 0)])
def test_single_process_sets_the_chosen_gpu_current(fake_gpus, flags, index):
    args = training_parser("", "supervised").parse_args(flags)
    info, device = rd.init_distributed(device_flag(args))
    assert not info.distributed and device == torch.device("cuda", index)
    assert fake_gpus == [index]


def _as_torchrun_rank(monkeypatch, rank: int, world_size: int, local_rank: int | None = None,
                      fake_group: list | None = None) -> None:
    """The environment torchrun gives a rank; with ``fake_group``, joining the process group only records the
    backend there."""
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    monkeypatch.setenv("WORLD_SIZE", str(world_size))
    monkeypatch.setenv("RANK", str(rank))
    if local_rank is not None:
        monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    monkeypatch.delenv("TORCHINDUCTOR_COMPILE_THREADS", raising=False)  # joining sets it; undone after the test
    if fake_group is not None:
        monkeypatch.setattr(rd.dist, "is_initialized", lambda: False)
        monkeypatch.setattr(rd.dist, "init_process_group", lambda backend, **kw: fake_group.append(backend))


def test_torchrun_rank_sets_its_local_gpu_and_never_gpu_0(fake_gpus, monkeypatch):
    groups = []
    _as_torchrun_rank(monkeypatch, rank=1, world_size=2, local_rank=1, fake_group=groups)
    info, device = rd.init_distributed("cuda")
    assert (info.rank, info.world_size, info.local_rank, info.distributed) == (1, 2, 1, True)
    assert device == torch.device("cuda", 1) and fake_gpus == [1] and groups == ["nccl"]


def test_torchrun_with_one_process_joins_a_group_of_one(fake_gpus, monkeypatch):
    groups = []
    _as_torchrun_rank(monkeypatch, rank=0, world_size=1, fake_group=groups)
    info, device = rd.init_distributed("cpu")
    assert info.distributed and info.world_size == 1 and device == CPU and groups == ["gloo"] and fake_gpus == []


def test_test_and_predict_set_the_gpu_before_loading(fake_gpus, monkeypatch, tmp_path):
    """load_generator (test.py's evaluate_checkpoint and predict.py's Predictor) makes cuda:N current first."""
    import inference.weights as weights

    cfg = load_config("tiny")
    args = generator_args(cfg, 16)
    path = tmp_path / "g.pt"
    torch.save({"generator": build_generator(args).state_dict(), "model_args": args, "config": cfg.to_dict()}, path)
    order = []
    load = weights.load_checkpoint
    monkeypatch.setattr(weights, "load_checkpoint", lambda *a: order.append(list(fake_gpus)) or load(*a))
    monkeypatch.setattr(weights, "place_module", lambda module, device, channels_last: module)  # no real GPU
    loaded = weights.load_generator(str(path), "cuda:3")
    assert loaded.device == torch.device("cuda", 3) and order == [[3]]


def test_a_torchrun_rank_that_cannot_read_resume_names_itself(tmp_path, capsys, monkeypatch):
    import train_supervised

    _as_torchrun_rank(monkeypatch, rank=3, world_size=4)
    with pytest.raises(SystemExit) as exc:
        train_supervised.main(["--resume", str(tmp_path / "missing"), "--device", "cpu"])
    assert exc.value.code == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("error: rank 3 (host ") and f"checkpoint not found: {tmp_path / 'missing'}" in line
    assert "filesystem" in line and "\n" not in line


def test_pin_memory_only_for_a_cuda_model(tmp_path):
    spec = RunSpec(dataset="synthetic", path=None, train_split="train", val_split="val", run_dir=str(tmp_path / "r"),
                   device="cpu", max_train_samples=4, max_val_samples=2)
    run = build_run(load_config("tiny", {"method": "supervised"}), spec)
    assert run.train_loader.pin_memory is False and run.val_loader.pin_memory is False


# ---- generator states ---------------------------------------------------------------------------

def _draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


@pytest.mark.parametrize("device", [None, CPU])
def test_state_saved_on_a_gpu_restores_on_cpu(device):
    state = {**rng_state(), "cuda": torch.zeros(16, dtype=torch.uint8)}
    expected = _draws()
    _draws()
    set_rng_state(state, device)
    assert _draws() == expected


def test_a_gpus_state_restores_on_the_runs_gpu(monkeypatch):
    restored = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device: restored.append((s, device)))
    gpu = torch.full((16,), 3, dtype=torch.uint8)
    set_rng_state({**rng_state(), "cuda": gpu}, torch.device("cuda", 2))
    assert len(restored) == 1 and restored[0][0] is gpu and restored[0][1] == torch.device("cuda", 2)


def test_each_rank_resumes_from_its_own_states_or_none():
    ranks = [{"torch": torch.tensor([r])} for r in range(2)]
    two = {"rng_ranks": ranks}
    assert rank_rng_state(two, 0) is ranks[0] and rank_rng_state(two, 1) is ranks[1]
    assert rank_rng_state(two, 2) is None  # resumed on more ranks than were saved


def test_a_rank_without_saved_states_seeds_from_seed_rank_and_iteration(tmp_path):
    spec = RunSpec(dataset="synthetic", path=None, train_split="train", val_split="val", run_dir=str(tmp_path / "r"),
                   device="cpu", max_train_samples=4, max_val_samples=2)
    run = build_run(load_config("tiny", {"method": "supervised", "seed": 5}), spec)
    run.state.iteration = 7
    ckpt = {**checkpoint_of(run), LOADED_FROM: "test"}  # one process: one entry in rng_ranks
    assert len(ckpt["rng_ranks"]) == 1
    restore(dataclasses.replace(run, dist=DistInfo(rank=3, world_size=4)), ckpt)  # as rank 3 of a 4-process resume
    got = torch.get_rng_state()
    torch.manual_seed(derived_seed(5, 3, 7))
    assert torch.equal(got, torch.get_rng_state())
    restore(run, ckpt)
    assert torch.equal(torch.get_rng_state(), ckpt["rng_ranks"][0]["torch"])
    assert len({derived_seed(5, r, 7) for r in range(64)} | {derived_seed(6, r, 7) for r in range(64)}) == 128


def test_ranks_draw_from_the_projects_derived_seeds_and_rank_0_from_the_seed():
    assert rank_seed(5, 0) == 5  # a run of one process draws as it always has
    assert [rank_seed(5, r) for r in (1, 2)] == [derived_seed(5, 1), derived_seed(5, 2)]
    assert rank_seed(1, 1) != rank_seed(2, 0)  # seed + rank would give both 2


@pytest.mark.parametrize(("saved_world", "world", "saved_step", "step"), [(4, 1, 6, 24), (1, 4, 6, 1), (8, 2, 3, 12),
                                                                          (2, 2, 5, 5)])
def test_mid_epoch_position_converts_between_process_counts(saved_world, world, saved_step, step):
    """epoch_step counts one rank's batches: a checkpoint of 4 ranks 6 steps into an epoch has used 24 batches
    of the epoch's permutation, which one process resumes at its 24th."""
    state, note = resumed_state({"epoch": 1, "epoch_step": saved_step, "iteration": 9}, saved_world, world, 8)
    assert state.epoch_step == step and (state.epoch, state.iteration) == (1, 9)
    assert (note is None) == (saved_world == world)


@pytest.mark.parametrize(("first", "then"), [("bf16", "fp16"), ("fp16", "off"), ("fp16", "fp16")])
def test_resume_across_precisions(tmp_path, monkeypatch, first, then):
    """A bf16 or fp32 checkpoint (empty loss-scaler states) resumes in fp16 (a V100 or T4) from the default
    scale; an fp16 checkpoint resumes without scaling, or in fp16 with its saved scales."""
    import train_supervised
    from checkpoint import load_checkpoint

    args = ["--config", "config.tiny", "--device", "cpu", "--save_root", str(tmp_path), "--modelName", "r",
            "--max_train_samples", "8", "--max_val_samples", "4"]
    train_supervised.main([*args, "--epochs", "1", "--set", f"amp={first}"])
    saved = load_checkpoint(str(tmp_path / "r" / "last.pt"))["scalers"]["generator"]
    assert bool(saved) == (first == "fp16")
    loaded = []
    load = torch.amp.GradScaler.load_state_dict
    monkeypatch.setattr(torch.amp.GradScaler, "load_state_dict", lambda self, state: loaded.append(state) or
                        load(self, state))
    train_supervised.main([*args, "--epochs", "2", "--resume", str(tmp_path / "r"), "--set", f"amp={then}"])
    resumed = load_checkpoint(str(tmp_path / "r" / "last.pt"))
    assert resumed["state"]["epoch"] == 2 and bool(resumed["scalers"]["generator"]) == (then == "fp16")
    assert loaded == ([saved] if first == then == "fp16" else [])  # the saved scale goes on only into fp16
