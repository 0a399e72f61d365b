"""scripts/benchmark.py: the quick mode runs end to end on CPU and writes every figure to JSON."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import REPO, error_line

from scripts import benchmark


def _positive_numbers(value, where: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _positive_numbers(v, f"{where}.{k}")
    else:
        assert isinstance(value, int | float) and value > 0, f"{where} = {value!r}"


@pytest.mark.slow
def test_quick_benchmark_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "scripts.benchmark", "--quick", "--config", "config.tiny",
           "--device", "cpu", "--threads", "1", "--pipeline_samples", "40", "--peak_tflops", "1.0",
           "--json", str(out)]
    env = {**os.environ, "PYTHONPATH": REPO}  # run from tmp_path: nothing lands in the repository
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    for key in ("pipeline_images_per_s_per_worker", "pipeline_cached_images_per_s_per_worker",
                "pipeline_loader_images_per_s_1_worker", "train_images_per_s", "inference_images_per_s",
                "tflops_achieved", "peak_fraction", "flops_per_step", "speedup", "batch_size", "peak_tflops"):
        _positive_numbers(r[key], key)
    for method in ("supervised", "adversarial"):
        assert set(r["train_images_per_s"][method]) == {"plain", "optimized"}
    assert set(r["inference_images_per_s"]) == {"batch", "single"}
    assert r["pipeline_res"] == 256 and r["config"] == "config.tiny" and r["device"] == "cpu"
    assert r["torch"] and r["device_name"] and r["optimized_dtype"] == "float32"  # config.tiny pins amp=off
    # the record names this CPU's capability and each variant's precision with the reason
    assert r["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert r["precision"] == {"plain": "fp32", "optimized": "fp32"} and r["precision_reason"] == "amp=off as set"
    assert "train supervised" in proc.stdout and f"CPU capability {r['cpu_capability']}" in proc.stdout  # the table


def test_optimized_cpu_precision_follows_the_machine(monkeypatch):
    """"optimized" is the trainer's own choice: bf16 only on a CPU that runs it natively, else fp32."""
    import runtime.device as rt
    from config import load_config

    cfg = load_config("tiny", {"amp": "auto"})
    for native, dtype in ((False, None), (True, torch.bfloat16)):
        monkeypatch.setattr(rt, "cpu_has_native_bf16", lambda native=native: native)
        setup = benchmark.Setup(cfg, "supervised", "optimized", torch.device("cpu"), compile_on_cuda=False)
        assert setup.ctx.dtype == dtype and setup.ctx.channels_last
        assert benchmark.Setup(cfg, "supervised", "plain", torch.device("cpu"), False).ctx.dtype is None


def test_an_existing_json_is_refused_before_any_measurement(tmp_path, capsys):
    out = tmp_path / "bench.json"
    out.write_text("{}")
    line = error_line(benchmark, ["--json", str(out), "--device", "no-such-device"], capsys)  # the check comes first
    assert line.startswith(f"error: --json: 1 file would be replaced ({out}); pass --overwrite")
    assert out.read_text() == "{}"


@pytest.mark.parametrize(("flags", "expected"), [
    (["--batch_size", "0"], "error: --batch_size: must be at least 1, got 0"),  # once: the config's batch
    (["--data", "/nonexistent"], "error: --data: no joints.mat in /nonexistent; expected an LSPET-layout folder"),
])
def test_bad_batch_size_or_data_is_refused_not_replaced(capsys, flags, expected):
    """Once --batch_size 0 ran at the config's batch, and a --data that does not exist measured synthetic data."""
    line = error_line(benchmark, ["--config", "config.tiny", "--device", "cpu", *flags], capsys)
    assert line.startswith(expected), line


def test_only_the_default_data_falls_back_to_synthetic(tmp_path, monkeypatch):
    monkeypatch.setattr(benchmark, "DEFAULT_DATA", str(tmp_path / "absent"))
    _, name = benchmark.pipeline_dataset(None, 64, cache=False)
    assert name == "synthetic (lspet-mini not found)"


def _documented_commands(path: str) -> list[str]:
    """The commands and command fragments of a Markdown file: each line of a fenced block, each inline
    `code` span (which may run over a line break)."""
    text = open(path, encoding="utf-8").read()
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    inline = re.findall(r"`([^`]+)`", re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M))
    return [line for block in fenced for line in block.splitlines()] + [" ".join(s.split()) for s in inline]


@pytest.mark.parametrize("doc", ["README.md", "docs/performance.md", "docs/gpu-acceptance.md"])
def test_documented_commands_that_rewrite_a_committed_file_say_overwrite(doc):
    """Once `--json docs/bench-cpu.json` as documented was refused: 1 file would be replaced."""
    checked = 0
    for command in _documented_commands(os.path.join(REPO, doc)):
        for target in re.findall(r"--(?:json|output|out)[ =](\S+)", command):
            if os.path.isfile(os.path.join(REPO, target)):
                checked += 1
                assert "--overwrite" in command.split(), f"{doc}: {command}"
    assert checked or doc == "docs/gpu-acceptance.md"


def test_no_peak_means_no_peak_fraction_on_cpu(tmp_path):
    args = benchmark.parse_args([])
    assert benchmark.peak_tflops(args, torch.device("cpu"), None) is None
    assert benchmark.peak_tflops(benchmark.parse_args(["--peak_tflops", "50"]), torch.device("cpu"), None) == 50


@pytest.mark.parametrize(("name", "peak"), [
    ("NVIDIA H100 80GB HBM3", 989.4),  # SXM
    ("NVIDIA H100 SXM5 80GB", 989.4),
    ("NVIDIA H100 PCIe", 756.0),
    ("NVIDIA H100 NVL", 835.0),
    ("NVIDIA H200", 989.4),
    ("NVIDIA H200 NVL", None),  # another power limit: not in the table
    ("NVIDIA GH200 480GB", None),  # not an H200
    ("NVIDIA H100", None),  # which board is unknown
    ("NVIDIA A100-SXM4-80GB", None),
    ("Tesla V100-SXM2-16GB", None),
])
def test_peak_table_tells_the_h100_boards_and_the_h200_apart(name, peak):
    assert benchmark.table_peak_tflops(name) == peak


def test_plain_mode_is_true_fp32_and_restores_the_settings():
    import torch

    from runtime.device import strict_fp32

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
              torch.get_float32_matmul_precision())
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, True
    torch.set_float32_matmul_precision("high")
    try:
        with benchmark.precision_of("plain"):
            assert torch.backends.cuda.matmul.allow_tf32 is False and torch.backends.cudnn.allow_tf32 is False
            assert torch.get_float32_matmul_precision() == "highest"
        assert torch.backends.cuda.matmul.allow_tf32 is True and torch.backends.cudnn.allow_tf32 is True
        assert torch.get_float32_matmul_precision() == "high"
        with pytest.raises(RuntimeError), strict_fp32():  # restored when the block fails too
            raise RuntimeError
        assert torch.backends.cudnn.allow_tf32 is True and torch.get_float32_matmul_precision() == "high"
        with benchmark.precision_of("optimized"):  # left as set
            assert torch.backends.cudnn.allow_tf32 is True and torch.get_float32_matmul_precision() == "high"
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before[:2]
        torch.set_float32_matmul_precision(before[2])
