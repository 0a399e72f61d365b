"""Crash safety: exact mid-epoch resume, SIGKILL at random moments, non-finite losses."""

from __future__ import annotations

import dataclasses
import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import REPO, tiny_cfg
from conftest import assert_same_last_checkpoint as _assert_same_weights
from conftest import log_records as _log
from conftest import synthetic_spec as _spec

import train_supervised
import training.loop
import training.run
from checkpoint import load_checkpoint
from cli.training import resumed_settings, run_spec, training_parser
from config import load_config
from datasets.sampler import EpochSampler
from datasets.synthetic import SyntheticDataset
from training.loop import fit
from training.run import build_run, save
from training.spec import RunSpec

TIME_KEYS = {"seconds", "images_per_s"}


@pytest.fixture(autouse=True, scope="module")
def deterministic_mode_reset():
    """Runs here switch deterministic algorithms on (conftest already pins one thread); undo it for later modules."""
    yield
    torch.use_deterministic_algorithms(False)


def _cfg(method="supervised", **extra):
    return tiny_cfg(method, **{"deterministic": True, "epochs": 2, "checkpoint_every": 3, **extra})


class _Preempted(Exception):
    """Raised in place of a training step to leave the loop as a kill at that moment would."""


def _fit_until_preempted(run, iterations: int) -> None:
    """Fit ``run`` but stop it for good after ``iterations`` steps, as a pre-emption would: the loop raises
    before step ``iterations + 1``, after everything that followed step ``iterations`` (its checkpoint, if
    one was due), and nothing after that is saved."""
    calls = 0
    step = training.loop.train_step

    def counting_step(*args, **kwargs):
        nonlocal calls
        if calls == iterations:
            raise _Preempted
        calls += 1
        return step(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training.loop, "train_step", counting_step)
        with pytest.raises(_Preempted):
            fit(run)
    assert run.state.iteration == iterations


def _assert_same_log(a_dir, b_dir, epochs):
    a, b = _log(a_dir), _log(b_dir)
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b] == list(range(epochs))
    for ra, rb in zip(a, b, strict=True):
        assert {k: v for k, v in ra.items() if k not in TIME_KEYS} == {k: v for k, v in rb.items()
                                                                        if k not in TIME_KEYS}


@pytest.mark.slow
@pytest.mark.parametrize(("method", "stop"), [("supervised", 7), ("adversarial", 6), ("adversarial", 3)])
def test_interrupted_mid_epoch_run_resumes_bit_identically(tmp_path, method, stop):
    """4 steps per epoch, last.pt every 3 steps: stop after 7 (resume from step 2 of epoch 1 and redo
    step 7), after 6 (resume from step 2 of epoch 1) or after 3 (resume from step 3 of epoch 0).
    DataLoader workers are covered by the SIGKILL test, in a fresh process as in real use."""
    cfg = _cfg(method)
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    fit(build_run(cfg, _spec(ref)))
    _fit_until_preempted(build_run(cfg, _spec(cut)), stop)
    state = load_checkpoint(str(cut))["state"]
    assert 0 < state["epoch_step"] < 4 and state["iteration"] == stop // 3 * 3
    fit(build_run(cfg, _spec(cut, resume=str(cut))))
    nets = ["generator"] + (["pose_disc", "conf_disc"] if method == "adversarial" else [])
    ckpt = load_checkpoint(str(cut))
    assert set(nets) | {"optimizers", "schedulers", "scalers", "rng_ranks", "state", "config", "dataset"} <= set(ckpt)
    assert set(ckpt["optimizers"]) == set(ckpt["schedulers"]) == set(ckpt["scalers"]) == set(nets)
    assert {"python", "numpy", "torch"} <= set(ckpt["rng_ranks"][0]) and ckpt["config"]["deterministic"] is True
    assert {"epoch", "iteration", "best_metric"} <= set(ckpt["state"])
    _assert_same_weights(ref, cut, nets)
    _assert_same_log(ref, cut, cfg.epochs)


def _run_spec(argv: list[str]) -> RunSpec:
    args = training_parser("", "supervised").parse_args(argv)
    flags = dict(vars(args))
    spec = run_spec(args, resumed_settings(args))
    assert vars(args) == flags  # nothing cached on the parsed flags
    return spec


def test_resume_takes_run_folder_and_data_flags_from_the_checkpoint(tmp_path):
    run_dir = tmp_path / "elsewhere"
    save(build_run(_cfg(), dataclasses.replace(_spec(run_dir), max_val_samples=3)), "last.pt")
    for resume in (str(run_dir), str(run_dir / "last.pt")):
        got = _run_spec(["--resume", resume])
        assert (got.run_dir, got.dataset, got.max_train_samples, got.max_val_samples) == (
            str(run_dir), "synthetic", 16, 3)
    got = _run_spec(["--resume", str(run_dir / "last.pt"), "--modelName", "new", "--max_val_samples", "5"])
    assert (got.run_dir, got.max_val_samples) == (os.path.join("trainmodel", "new"), 5)


def _train_cmd(save_root, *extra):
    return [sys.executable, "train_supervised.py", "--config", "config.tiny", "--device", "cpu", "--workers", "2",
            "--save_root", str(save_root), "--modelName", "kill", "--epochs", "3", "--max_train_samples", "16",
            "--max_val_samples", "4", "--set", "checkpoint_every=1", "--set", "deterministic=True", *extra]


def _temp_files(run_dir) -> set[str]:
    try:
        return {n for n in os.listdir(run_dir) if n.startswith(".tmp-")}
    except FileNotFoundError:
        return set()


def _finished(last) -> bool:
    """The kill test's run has written the checkpoint after its third and last epoch."""
    return last.exists() and load_checkpoint(str(last))["state"]["epoch"] == 3


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_finishes_a_complete_run(tmp_path):
    """Kill -9 (2 DataLoader workers) mid-epoch and while a checkpoint is being written, resume each time;
    the result equals a run without kills and without workers, bit for bit."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    run_dir = tmp_path / "kill"
    rng = random.Random(0)
    kills = ["mid-epoch", "during-write", "mid-epoch", "during-write"]
    last = run_dir / "last.pt"
    for how in kills:
        if _finished(last):  # the kill landed after the final checkpoint (a fast CPU)
            break
        # killed while its first last.pt was written, best.pt complete: resumes from best.pt; killed before its
        # first checkpoint: the same command starts it again, no --overwrite needed
        resume = ["--resume", str(run_dir)] if last.exists() or (run_dir / "best.pt").exists() else []
        stale = _temp_files(run_dir)
        # output to a file: orphaned workers of a killed run keep a pipe open until they notice (<= 5 s)
        err_file = tmp_path / "stderr.txt"
        with open(err_file, "w") as err_out:
            proc = subprocess.Popen(_train_cmd(tmp_path, *resume), cwd=REPO, env=env,
                                    stdout=subprocess.DEVNULL, stderr=err_out)
        deadline = time.monotonic() + 30
        if how == "mid-epoch":  # some random time after the run has written a checkpoint of its own
            before = os.path.getmtime(run_dir / "last.pt") if last.exists() else 0.0
            while proc.poll() is None and time.monotonic() < deadline and not (
                    (run_dir / "last.pt").exists() and os.path.getmtime(run_dir / "last.pt") > before):
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.6))
        else:  # the moment a new temporary checkpoint file appears, i.e. inside save_checkpoint
            while proc.poll() is None and time.monotonic() < deadline and not (_temp_files(run_dir) - stale):
                time.sleep(0.0005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode in (-signal.SIGKILL, 0), err_file.read_text()
        if proc.returncode == 0:
            break
    if not _finished(last):
        done = subprocess.run(_train_cmd(tmp_path, "--resume", str(run_dir)), cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert [r["epoch"] for r in _log(run_dir)] == [0, 1, 2]
    assert load_checkpoint(str(run_dir / "last.pt"))["state"]["epoch"] == 3
    assert load_checkpoint(str(run_dir / "best.pt"))["state"]["epoch"] >= 1
    assert not _temp_files(run_dir), "a killed write's temporary file was left behind"
    # the same run without kills, in this process, ends with the same weights
    cfg = load_config("tiny", {"method": "supervised", "deterministic": True, "epochs": 3, "checkpoint_every": 1})
    fit(build_run(cfg, _spec(tmp_path / "ref")))
    _assert_same_weights(tmp_path / "ref", run_dir, ["generator"])


# ---- non-finite losses ------------------------------------------------------------------------

POISONED = 5  # sample index whose image becomes NaN in epoch 1


@pytest.fixture
def poisoned_sample(monkeypatch):
    """Sample POISONED of the synthetic train set gets a NaN image in epoch 1 (epoch 0 trains cleanly)."""
    original = SyntheticDataset.__getitem__

    def getitem(self, key):
        sample = original(self, key)
        if self.split == "train" and key == (POISONED, 1):
            sample["image"][:] = float("nan")
        return sample

    monkeypatch.setattr(SyntheticDataset, "__getitem__", getitem)
    sampler = EpochSampler(8, shuffle=True, seed=0, drop_last=True)
    sampler.set_epoch(1)
    order = [i for i, _ in sampler]
    return 2 + order.index(POISONED) // 4  # steps done before the poisoned batch (2 steps per epoch)


def _main(tmp_path, *extra):
    return train_supervised.main(["--config", "config.tiny", "--device", "cpu", "--save_root", str(tmp_path),
                                  "--modelName", "nan", "--max_train_samples", "8", "--max_val_samples", "4",
                                  "--epochs", "2", "--set", "checkpoint_every=1", *extra])


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = re.split(r"[\r\n]+", err.strip())[-1]
    assert last.startswith("error: ") and err.count("error:") == 1
    return last


def test_nan_loss_stops_with_one_line_naming_iteration_and_term_and_keeps_last_good_checkpoint(
        tmp_path, capsys, poisoned_sample):
    with pytest.raises(SystemExit) as exc:
        _main(tmp_path)
    assert exc.value.code == 2
    line = _error_line(capsys)
    assert f"non-finite loss_mse at iteration {poisoned_sample} (epoch 1)" in line
    assert "last.pt" in line
    ckpt = load_checkpoint(str(tmp_path / "nan"))
    assert ckpt["state"]["iteration"] == poisoned_sample and ckpt["state"]["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in ckpt["generator"].values())
    assert [r["epoch"] for r in _log(tmp_path / "nan")] == [0]


def test_skip_nonfinite_skips_and_counts_the_batch(tmp_path, capsys, poisoned_sample):
    _main(tmp_path, "--skip_nonfinite")
    log = _log(tmp_path / "nan")
    assert [(r["epoch"], r["skipped_batches"]) for r in log] == [(0, 0), (1, 1)]
    assert np.isfinite(log[1]["loss_mse"])
    assert "skipped 1 non-finite batches" in capsys.readouterr().out
    ckpt = load_checkpoint(str(tmp_path / "nan"))
    assert all(torch.isfinite(t).all() for t in ckpt["generator"].values())


def test_exploding_lr_stops_cleanly_without_saving_nonfinite_weights(tmp_path, capsys, monkeypatch):
    # lr=1e30 is outside the config's range (--set refuses it), so it is set on the optimiser the run builds
    build = training.run.build_optimizers

    def exploding(*args, **kwargs):
        optims = build(*args, **kwargs)
        for group in optims["generator"].param_groups:
            group["lr"] = 1e30
        return optims

    monkeypatch.setattr(training.run, "build_optimizers", exploding)
    with pytest.raises(SystemExit) as exc:
        _main(tmp_path, "--epochs", "1")
    assert exc.value.code == 2
    assert re.search(r"non-finite \S+ (weights \(\S+\) after|at) iteration \d+", _error_line(capsys))
    if (tmp_path / "nan" / "last.pt").exists():
        ckpt = load_checkpoint(str(tmp_path / "nan"))
        assert all(torch.isfinite(t).all() for t in ckpt["generator"].values())
