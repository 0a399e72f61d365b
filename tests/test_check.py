"""``--check``: a run's checks before its first step, in one process, without training or writing anything; and
the DDP scripts, which run it before torchrun starts a process per GPU (README "Several GPUs and machines")."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from conftest import REPO, error_line, fingerprint, lspet_folder, lspet_joints

import train_adversarial
import train_supervised

TINY = ["--config", "config.tiny", "--device", "cpu"]


def _check_line(entry, argv: list[str], capsys) -> str:
    """Run ``entry --check``: it returns without training and prints exactly one line, the check's."""
    capsys.readouterr()
    assert entry.main(argv) is None
    out, err = capsys.readouterr()
    assert err == "" and len(out.splitlines()) == 1, (out, err)
    assert out.startswith("check passed: "), out
    return out.strip()


def test_check_passes_on_good_input_and_creates_nothing(tmp_path, lspet_root, capsys):
    root = tmp_path / "runs"
    line = _check_line(train_supervised, ["--dataset", "lspet", "--path", lspet_root, *TINY, "--save_root",
                                          str(root), "--model_name", "a", "--max_train_samples", "32", "--check"],
                       capsys)
    assert "supervised run on 1 process(es)" in line and "lspet 'train' 32 (of 1800)" in line
    assert "image files readable" in line and f"run directory {root / 'a'}: a new run" in line
    assert not root.exists()  # no run directory, no lock file, no save_root


def test_check_counts_the_processes_it_is_given(tmp_path, capsys):
    """The batch is per process: 8 samples make one step of 4 on one process and none on two."""
    argv = [*TINY, "--save_root", str(tmp_path), "--max_train_samples", "8", "--batch_size", "8"]
    _check_line(train_supervised, [*argv, "--check"], capsys)
    line = error_line(train_supervised, [*argv, "--check", "2"], capsys)
    assert "--batch_size: 8 is larger than the train set" in line and "shared by 2 processes" in line
    assert "--check: 0 processes" in error_line(train_supervised, [*argv, "--check", "0"], capsys)
    line = error_line(train_supervised, [*TINY, "--save_root", str(tmp_path), "--set", "sync_bn=True",
                                         "--check", "2"], capsys)
    assert line.startswith("error: sync_bn=True: PyTorch's SyncBatchNorm has no CPU kernels")
    assert os.listdir(tmp_path) == []


def test_check_refuses_bad_input_with_the_runs_own_line(tmp_path, capsys):
    no_images = lspet_folder(tmp_path / "lspet", lspet_joints(20))  # joints.mat, no image files
    root = tmp_path / "runs"
    cases = {
        "--path: dataset directory not found": ["--dataset", "lspet", "--path", str(tmp_path / "none")],
        "cannot be read, found before any work": ["--dataset", "lspet", "--path", no_images, "--batch_size", "2"],
        "--pretrained: checkpoint not found": ["--pretrained", str(tmp_path / "none.pt")],
    }
    for expected, flags in cases.items():
        line = error_line(train_adversarial, [*TINY, "--save_root", str(root), *flags, "--check"], capsys)
        assert expected in line, line
    assert not root.exists()


def test_check_decides_about_the_run_directory_without_acting(tiny_run_dir, tmp_path, capsys):
    """A finished run: a fresh start into it is refused, --overwrite would move it aside and --resume would
    continue it; the check does neither."""
    before = fingerprint(tiny_run_dir)
    root, name = str(tiny_run_dir.parent), tiny_run_dir.name
    fresh = [*TINY, "--save_root", root, "--model_name", name, "--max_train_samples", "8"]
    assert "already holds a run" in error_line(train_supervised, [*fresh, "--check"], capsys)
    line = _check_line(train_supervised, [*fresh, "--overwrite", "--check"], capsys)
    assert f"--overwrite will move its files to {tiny_run_dir}.old-<time>/" in line
    line = _check_line(train_supervised, ["--resume", str(tiny_run_dir), "--epochs", "2", "--check"], capsys)
    assert f"--resume {tiny_run_dir / 'last.pt'}" in line and "the run continues there" in line
    assert "has already trained 1 of epochs=1" in error_line(
        train_supervised, ["--resume", str(tiny_run_dir), "--check"], capsys)
    line = _check_line(train_adversarial, [*fresh, "--model_name", "adv", "--pretrained",
                                           str(tiny_run_dir / "best.pt"), "--check"], capsys)
    assert f"--pretrained {tiny_run_dir / 'best.pt'}" in line
    assert fingerprint(tiny_run_dir) == before
    assert sorted(os.listdir(root)) == [name]  # nothing moved aside, no run directory for "adv"


def _fake_torchrun(tmp_path) -> dict[str, str]:
    """An environment whose ``torchrun`` only records its arguments (in tmp_path/torchrun.args)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "torchrun"
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > {tmp_path / "torchrun.args"}\n')
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1",
            "NGPU": "2", "DEVICE": "cpu"}


@pytest.mark.parametrize("script", ["train-supervised-ddp.sh", "train-adversarial-ddp.sh"])
def test_ddp_script_checks_before_torchrun(script, tmp_path, lspet_root):
    env = _fake_torchrun(tmp_path)
    path, runs, called = os.path.join(REPO, "scripts", script), tmp_path / "runs", tmp_path / "torchrun.args"
    done = subprocess.run(["bash", path, "--save_root", str(runs)], env={**env, "DATA": str(tmp_path / "none")},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [f"error: --path: dataset directory not found: {tmp_path / 'none'}"]
    assert not called.exists()  # torchrun never started

    flags = ["--save_root", str(runs), "--max_train_samples", "32", "--max_val_samples", "8"]
    good = {**env, "DATASET": "lspet", "DATA": lspet_root, "CONFIG": "config.tiny", "EPOCHS": "1"}
    done = subprocess.run(["bash", path, *flags], env=good, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"check passed: \w+ run on 2 process\(es\).*nothing was written\n", done.stdout)
    launched = called.read_text().splitlines()
    assert launched[:2] == ["--nproc_per_node", "2"] and launched[-len(flags):] == flags
    assert "--check" not in launched and not runs.exists()


def test_ddp_script_check_refuses_a_process_count_the_data_cannot_feed(tmp_path):
    """The script checks for its NGPU x NNODES processes: 16 synthetic samples in batches of 4 feed 4
    processes, not 8."""
    env = {**_fake_torchrun(tmp_path), "DATASET": "synthetic", "CONFIG": "config.tiny", "NNODES": "2"}
    path = os.path.join(REPO, "scripts", "train-supervised-ddp.sh")
    for ngpu, code in (("4", 2), ("2", 0)):
        done = subprocess.run(["bash", path, "--save_root", str(tmp_path / "runs"), "--batch_size", "4"],
                              env={**env, "NGPU": ngpu}, capture_output=True, text=True, timeout=300)
        assert done.returncode == code, done.stderr
        assert (tmp_path / "torchrun.args").exists() == (code == 0)
        if code:
            assert "shared by 8 processes" in done.stderr and len(done.stderr.splitlines()) == 1
