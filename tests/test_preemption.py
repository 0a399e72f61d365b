"""Preemption is a normal event: SIGTERM or SIGUSR1 (what a scheduler sends before a preemption or a time
limit) ends the current step, saves a resumable last.pt and exits with one line and 128 + the signal's number;
the same command with --resume then continues bit-exactly, as after the SIGKILLs of tests/test_robustness.py.
A tool stopped by SIGTERM while writing (predict.py on a video) leaves no temporary file.

The trainer runs in a fresh process, as in real use. Where the moment matters, a small driver (``DRIVER``)
patches the step function so that the process signals itself right after a chosen step, which lands the
signal at a known point without a test hook in the training code; one test signals the whole process group
from outside at whatever moment, DataLoader workers included, as a scheduler does. DDP: tests/test_ddp_faults.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO, assert_same_last_checkpoint, last_line, log_records, synthetic_spec, tiny_cfg

import train_adversarial
import train_supervised
from checkpoint import load_checkpoint
from training.loop import fit
from training.run import build_run

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
pytestmark = pytest.mark.slow  # subprocess runs end to end
TIME_KEYS = {"seconds", "images_per_s"}
STEPS_PER_EPOCH = 4  # 16 train samples, batch 4

# argv: entry module, the step after which the process sends itself the signal, the signal, "twice" (also send
# SIGTERM and SIGINT while the stop's checkpoint is written) or "once", then the entry point's arguments
DRIVER = """
import importlib, os, signal, sys
import training.loop, training.stopping
entry, after, signum, twice = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "twice"
argv = sys.argv[5:]
step, done = training.loop.train_step, []
def step_then_signal(*args, **kwargs):
    out = step(*args, **kwargs)
    done.append(1)
    if len(done) == after:
        os.kill(os.getpid(), signum)
    return out
training.loop.train_step = step_then_signal
if twice:
    save = training.stopping.save
    def save_under_fire(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        return save(*args, **kwargs)
    training.stopping.save = save_under_fire
importlib.import_module(entry).main(argv)
"""


@pytest.fixture(autouse=True, scope="module")
def deterministic_mode_reset():
    """The resumed runs here switch deterministic algorithms on; undo it for later modules."""
    yield
    torch.use_deterministic_algorithms(False)


def _args(save_root, *extra) -> list[str]:
    return ["--config", "config.tiny", "--device", "cpu", "--save_root", str(save_root), "--modelName", "stop",
            "--epochs", "2", "--max_train_samples", "16", "--max_val_samples", "4", "--print_every", "1",
            "--set", "deterministic=True", *extra]


def _reference(method: str, run_dir, epochs: int = 2) -> None:
    """The same run without a stop, in this process, without DataLoader workers."""
    fit(build_run(tiny_cfg(method, deterministic=True, epochs=epochs, print_every=1), synthetic_spec(run_dir)))


def _log(run_dir) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in log_records(run_dir)]


def _assert_same_run(a_dir, b_dir, nets: list[str]) -> None:
    assert_same_last_checkpoint(a_dir, b_dir, nets)
    assert _log(a_dir) == _log(b_dir)  # print_every 1: the logged means are summed in the same order


@pytest.mark.parametrize(("method", "sig", "after", "twice"), [
    ("supervised", signal.SIGTERM, 3, "once"),  # mid-epoch: epoch 0, step 3 of 4
    ("adversarial", signal.SIGUSR1, 4, "twice"),  # after the epoch's last step, before its validation
])
def test_a_stop_signal_saves_the_position_and_resume_continues_bit_exactly(tmp_path, method, sig, after, twice):
    entry = {"supervised": train_supervised, "adversarial": train_adversarial}[method]
    args = _args(tmp_path / "runs")
    run_dir = tmp_path / "runs" / "stop"
    done = subprocess.run([sys.executable, "-c", DRIVER, entry.__name__, str(after), str(int(sig)), twice, *args],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 128 + sig, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("error:") == 1, done.stderr
    epoch, step = divmod(after, STEPS_PER_EPOCH) if after % STEPS_PER_EPOCH else (after // STEPS_PER_EPOCH - 1,
                                                                                   STEPS_PER_EPOCH)
    assert last_line(done.stderr) == (
        f"error: stopped by {sig.name} after iteration {after} (epoch {epoch}, step {step}); resumable checkpoint: "
        f"{run_dir}/last.pt; continue with the same command and --resume {run_dir}")
    state = load_checkpoint(str(run_dir / "last.pt"))["state"]
    assert (state["iteration"], state["epoch"], state["epoch_step"]) == (after, epoch, step)
    assert sorted(os.listdir(run_dir)) == ["config.json", "last.pt"]  # no log line yet, no temp file, no lock

    entry.main([*args, "--resume", str(run_dir)])
    _reference(method, tmp_path / "ref")
    _assert_same_run(tmp_path / "ref", run_dir, ["generator"] + (["pose_disc", "conf_disc"]
                                                                 if method == "adversarial" else []))


def test_sigterm_to_every_process_of_the_job_at_any_moment(tmp_path):
    """A scheduler signals the whole job, the trainer's DataLoader workers too: they must not die under the
    trainer while it finishes its step and saves."""
    args = _args(tmp_path / "runs", "--workers", "2", "--epochs", "3")
    run_dir = tmp_path / "runs" / "stop"
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, "train_supervised.py", *args], cwd=REPO, env=ENV, text=True,
                                stdout=subprocess.PIPE, stderr=err, start_new_session=True)
    try:
        for line in proc.stdout:  # until the header line: training has begun
            if " | device cpu | " in line:
                break
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stdout.close()
    err = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert last_line(err).startswith("error: stopped by SIGTERM after iteration ")
    resumed = subprocess.run([sys.executable, "train_supervised.py", *args, "--resume", str(run_dir)], cwd=REPO,
                             env=ENV, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    _reference("supervised", tmp_path / "ref", epochs=3)
    _assert_same_run(tmp_path / "ref", run_dir, ["generator"])


PREDICT_DRIVER = """
import os, signal, sys
import inference.predict as predictor
import predict
predict_frame, frames = predictor.Predictor.predict, []
def predict_then_stop(self, *args, **kwargs):
    frames.append(1)
    if len(frames) == 3:
        os.kill(os.getpid(), signal.SIGTERM)
    return predict_frame(self, *args, **kwargs)
predictor.Predictor.predict = predict_then_stop
predict.main(sys.argv[1:])
"""


def test_sigterm_to_predict_py_during_a_video_leaves_no_temporary_file(tmp_path, tiny_run_dir):
    video = str(tmp_path / "clip.mp4")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (48, 40))
    for i in range(6):
        writer.write(np.full((40, 48, 3), 20 * i, np.uint8))
    writer.release()
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", PREDICT_DRIVER, "--checkpoint", str(tiny_run_dir), "--image", video,
                           "--output", str(out), "--device", "cpu"], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 143, done.stderr
    assert last_line(done.stderr).rsplit("\r", 1)[-1] == "error: stopped by SIGTERM"
    assert os.listdir(out) == []  # neither the hidden .tmp-*.mp4 nor .tmp-*.jsonl is left
