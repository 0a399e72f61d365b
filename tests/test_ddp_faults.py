"""DDP faults on CPU: one rank's trouble must not desynchronise the collectives.

Two gloo processes launched by torchrun train the tiny model while only rank 1 meets a fault:
- ``nonfinite``: rank 1's images of one batch are NaN (--skip_nonfinite). Without the agreement
  (``runtime.distributed.all_ranks_agree``) rank 1 skips its backward while rank 0 waits in the gradient
  all-reduce, and the ranks' collectives drift apart (a hang under NCCL);
- ``empty``: every image of rank 1's first batch of epoch 1 is unreadable (--skip_bad_images), so rank 1's
  batch is empty while rank 0's is not;
- ``unreadable``: --pretrained names a file that rank 1 cannot see (a node without the shared filesystem).
The run must end within a timeout, both ranks must skip the same steps and end with the same weights; the
unreadable file stops every rank with one line naming rank 1 and the path. A resume of the ``nonfinite``
run on two ranks gives each rank its own saved generator states.

The worker is this file run as a script under ``python -m torch.distributed.run``; the faults are injected
by patching the dataset and the loop's step function inside the worker, so no test hook lives in the
training code.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from conftest import REPO

pytestmark = pytest.mark.slow  # subprocess runs end to end
OVERRIDES = {"epochs": 2, "batch_size": 4, "synthetic_train_size": 16, "synthetic_val_size": 6, "workers": 0}
POISONED_CALL = 2  # rank 1's NaN batch: its third step, the first of epoch 1 (2 steps per epoch per rank)
STOPPED_AFTER = 3  # rank 1 alone gets SIGTERM after its third step: epoch 1, step 1 (2 steps per epoch)
TIMEOUT_S = 120


def _rank() -> int:
    return int(os.environ["RANK"])


def _inject_nan(poisoned_call: int) -> tuple[list, list]:
    """Rank 1's images of its ``poisoned_call``-th step become NaN; returns the list each step's "an update was
    refused" is appended to, and the list of every refused update's loss."""
    import dataclasses

    import training.loop

    step, calls, refused = training.loop.train_step, [], []

    def poisoned_step(nets, opts, b, ctx, *args, **kwargs):
        if _rank() == 1 and len(calls) == poisoned_call:
            b = {**b, "image": torch.full_like(b["image"], float("nan"))}
        before, gate = len(refused), ctx.gate

        def watched(loss):
            ok = gate(loss)
            if not ok:
                refused.append(float(loss))
            return ok

        out = step(nets, opts, b, ctx if gate is None else dataclasses.replace(ctx, gate=watched), *args, **kwargs)
        calls.append(len(refused) > before)
        return out

    training.loop.train_step = poisoned_step
    return calls, refused


def _unreadable_first_batch_of_epoch_1(cfg) -> None:
    """Every image of rank 1's first batch of epoch 1 raises the loader's unreadable-image error."""
    from datasets.sampler import EpochSampler
    from datasets.synthetic import SyntheticDataset
    from utils.errors import UserInputError

    sampler = EpochSampler(cfg.synthetic_train_size, shuffle=True, seed=cfg.seed, rank=1, world_size=2,
                           drop_last=True)
    sampler.set_epoch(1)
    bad = set(list(sampler)[: cfg.batch_size])  # (index, epoch) keys
    getitem = SyntheticDataset.__getitem__

    def failing(self, key):
        if _rank() == 1 and self.split == "train" and key in bad:
            raise UserInputError(f"cannot read image {key[0]} (test: unreadable on rank 1)")
        return getitem(self, key)

    SyntheticDataset.__getitem__ = failing


def _record_epochs() -> list:
    """Each rank's own epoch records (only rank 0 writes log.jsonl): iterations and skip counts."""
    import training.loop

    make, records = training.loop.epoch_record, []

    def recording(*args, **kwargs):
        rec = make(*args, **kwargs)
        records.append({k: rec[k] for k in ("epoch", "iterations", "skipped_batches", "skipped_images")})
        return rec

    training.loop.epoch_record = recording
    return records


def _stop_worker(scenario: str, out_dir: str) -> None:
    """One rank of ``sigterm`` (only rank 1 gets SIGTERM, after its step STOPPED_AFTER), ``stop-resume`` (the
    same command with --resume) or ``plain`` (the run without a stop), through ``train`` as the trainers run."""
    import training.loop
    import training.stopping
    from config import load_config
    from training.run import RunSpec
    from utils.errors import exit_on_user_error

    cfg = load_config("tiny", {**OVERRIDES, "method": "supervised", "deterministic": True})
    run_dir = os.path.join(out_dir, "plain" if scenario == "plain" else "stopped")
    spec = RunSpec(dataset="synthetic", path=None, train_split="train", val_split="val", run_dir=run_dir,
                   device="cpu", resume=run_dir if scenario == "stop-resume" else None)
    step, steps, stops = training.loop.train_step, [], []

    def step_then_signal(*args, **kwargs):
        out = step(*args, **kwargs)
        steps.append(1)
        if scenario == "sigterm" and _rank() == 1 and len(steps) == STOPPED_AFTER:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    stop_here = training.stopping.stop_here

    def recording_stop(run, signum):
        stops.append({"signum": signum, "iteration": run.state.iteration, "epoch_step": run.state.epoch_step})
        stop_here(run, signum)

    training.loop.train_step, training.loop.stop_here = step_then_signal, recording_stop
    try:
        exit_on_user_error(training.loop.train)(cfg, spec)  # as the entry scripts: one line, exit code 143
    finally:
        torch.save({"stops": stops, "steps": len(steps)}, os.path.join(out_dir, f"{scenario}-rank{_rank()}.pt"))


def _worker(scenario: str, out_dir: str) -> None:
    """One rank of ``scenario``: train with the real loop (fault injected), dump what the test compares."""
    import numpy as np

    if scenario in ("sigterm", "stop-resume", "plain"):
        _stop_worker(scenario, out_dir)
        return

    from config import load_config
    from training.loop import fit
    from training.run import RunSpec, build_run
    from training.steps import raw_module

    if scenario == "unreadable":
        import train_adversarial

        shared = os.path.join(out_dir, "pretrained.pt")
        if _rank() == 1:  # this node does not see the shared folder
            isfile = os.path.isfile
            os.path.isfile = lambda p: False if os.path.abspath(p) == shared else isfile(p)
        train_adversarial.main(["--config", "config.tiny", "--device", "cpu", "--save_root", out_dir,
                                "--modelName", "unreadable", "--pretrained", shared])
        return
    cfg = load_config("tiny", {**OVERRIDES, "method": "supervised", "epochs": 3 if scenario == "resume" else 2})
    run_dir = os.path.join(out_dir, scenario)  # "resume": a copy of the finished "nonfinite" run
    spec = RunSpec(dataset="synthetic", path=None, train_split="train", val_split="val", run_dir=run_dir,
                   device="cpu", skip_nonfinite=scenario == "nonfinite", skip_bad_images=scenario == "empty",
                   resume=run_dir if scenario == "resume" else None)
    calls, refused = _inject_nan(POISONED_CALL if scenario == "nonfinite" else -1)
    if scenario == "empty":
        _unreadable_first_batch_of_epoch_1(cfg)
    records = _record_epochs()
    run = build_run(cfg, spec)
    generators = {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64))}
    fit(run)
    dump = {"nets": {k: raw_module(v).state_dict() for k, v in run.nets.named().items()}, "calls": calls,
            "records": records, "iteration": run.state.iteration, "skipped_updates": len(refused),
            "generators_after_build": generators}
    torch.save(dump, os.path.join(out_dir, f"{scenario}-rank{_rank()}.pt"))


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            found.append(int(entry))
    return found


def _launch(scenario: str, out) -> subprocess.CompletedProcess:
    """Two ranks of ``scenario``; a launch still running after TIMEOUT_S is killed (its whole process group)
    and the test fails: that is the hang the agreement prevents."""
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           os.path.abspath(__file__), scenario, str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        for pid in _children(proc.pid):  # torchrun starts each rank in a session of its own
            os.kill(pid, signal.SIGKILL)
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{scenario}: the two ranks did not finish within {TIMEOUT_S} s (a desynchronised collective)\n"
                    + stdout[-2000:] + stderr[-2000:])
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    """One torchrun launch per scenario (a fresh process group each); ``resume`` continues a copy of the
    finished ``nonfinite`` run for one more epoch."""
    out = tmp_path_factory.mktemp("ddp-faults")
    for scenario in ("nonfinite", "empty", "resume"):
        if scenario == "resume":
            shutil.copytree(out / "nonfinite", out / "resume")
        done = _launch(scenario, out)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def _dumps(out, scenario: str) -> tuple[dict, dict]:
    return tuple(torch.load(out / f"{scenario}-rank{r}.pt", weights_only=False) for r in (0, 1))


def _assert_same_weights(r0: dict, r1: dict) -> None:
    for net, state in r0["nets"].items():
        for k, v in state.items():
            assert torch.isfinite(v).all() if v.is_floating_point() else True, f"{net}.{k} is not finite"
            assert torch.equal(v, r1["nets"][net][k]), f"{net}.{k} differs between ranks"


def test_nan_loss_on_one_rank_skips_the_step_on_both(faults):
    r0, r1 = _dumps(faults, "nonfinite")
    # 2 epochs x 2 steps per rank; the poisoned step is skipped by both ranks, on both the same step
    assert r0["calls"] == r1["calls"] == [False, False, True, False]
    assert r0["skipped_updates"] == r1["skipped_updates"] == 1
    assert [(r["epoch"], r["iterations"], r["skipped_batches"]) for r in r0["records"]] == [(0, 2, 0), (1, 4, 1)]
    assert r0["records"] == r1["records"]
    _assert_same_weights(r0, r1)
    log = [json.loads(line) for line in (faults / "nonfinite" / "log.jsonl").read_text().splitlines()]
    assert [r["skipped_batches"] for r in log if r.get("kind") == "epoch"] == [0, 1]


def test_empty_batch_on_one_rank_skips_the_step_on_both(faults):
    r0, r1 = _dumps(faults, "empty")
    assert len(r0["calls"]) == len(r1["calls"]) == 3  # 4 positions, one skipped by both ranks
    assert r0["iteration"] == r1["iteration"] == 3
    assert [(r["epoch"], r["iterations"]) for r in r0["records"]] == [(0, 2), (1, 3)] == \
        [(r["epoch"], r["iterations"]) for r in r1["records"]]
    assert [r["skipped_images"] for r in r1["records"]] == [0, OVERRIDES["batch_size"]]  # rank 1's own count
    assert [r["skipped_images"] for r in r0["records"]] == [0, 0]
    _assert_same_weights(r0, r1)


def test_resume_on_two_ranks_restores_each_ranks_own_generators(faults):
    ckpt = torch.load(faults / "nonfinite" / "last.pt", weights_only=True)
    assert len(ckpt["rng_ranks"]) == 2
    assert not torch.equal(ckpt["rng_ranks"][0]["torch"], ckpt["rng_ranks"][1]["torch"])
    r0, r1 = _dumps(faults, "resume")
    for rank, dump in enumerate((r0, r1)):
        assert torch.equal(dump["generators_after_build"]["torch"], ckpt["rng_ranks"][rank]["torch"])
        assert torch.equal(dump["generators_after_build"]["numpy"], ckpt["rng_ranks"][rank]["numpy"]["keys"])
    assert r0["records"] == r1["records"] and [r["epoch"] for r in r0["records"]] == [2]
    _assert_same_weights(r0, r1)


def test_resume_of_a_two_rank_checkpoint_in_one_process(faults, tmp_path):
    """One process resumes the 2-rank checkpoint with rank 0's generators and trains on."""
    from config import load_config
    from training.loop import fit
    from training.run import RunSpec, build_run

    run_dir = tmp_path / "single"
    shutil.copytree(faults / "nonfinite", run_dir)
    ckpt = torch.load(run_dir / "last.pt", weights_only=True)
    cfg = load_config("tiny", {**OVERRIDES, "method": "supervised", "epochs": 3})
    spec = RunSpec(dataset="synthetic", path=None, train_split="train", val_split="val", run_dir=str(run_dir),
                   device="cpu", resume=str(run_dir))
    run = build_run(cfg, spec)
    assert torch.equal(torch.get_rng_state(), ckpt["rng_ranks"][0]["torch"])
    fit(run)
    assert run.state.epoch == 3 and run.state.iteration == 4 + 4  # a single process takes every batch


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A 2-rank run where rank 1 alone gets SIGTERM, the same run resumed on 2 ranks, and the run without
    a stop."""
    out = tmp_path_factory.mktemp("ddp-stop")
    launches = {scenario: _launch(scenario, out) for scenario in ("sigterm", "stop-resume", "plain")}
    return out, launches


def test_sigterm_on_one_rank_stops_every_rank_after_the_same_step_and_resumes_exactly(stopped):
    out, launches = stopped
    assert launches["sigterm"].returncode != 0  # torchrun reports the ranks' exit code 143 as a failure
    assert "training/" not in launches["sigterm"].stderr  # no rank died with a traceback (torchrun prints its own)
    lines = {line for line in launches["sigterm"].stderr.splitlines() if line.startswith("error: ")}
    assert lines == {f"error: stopped by SIGTERM after iteration {STOPPED_AFTER} (epoch 1, step 1); resumable "
                     f"checkpoint: {out}/stopped/last.pt; continue with the same command and --resume "
                     f"{out}/stopped"}, launches["sigterm"].stderr[-3000:]
    r0, r1 = _dumps(out, "sigterm")
    assert r0["stops"] == r1["stops"] == [{"signum": signal.SIGTERM, "iteration": 3, "epoch_step": 1}]
    assert r0["steps"] == r1["steps"] == STOPPED_AFTER
    assert launches["stop-resume"].returncode == 0 and launches["plain"].returncode == 0
    a = torch.load(out / "plain" / "last.pt", weights_only=True)
    b = torch.load(out / "stopped" / "last.pt", weights_only=True)
    assert a["state"]["iteration"] == b["state"]["iteration"] == 4
    for k, v in a["generator"].items():
        assert torch.equal(v, b["generator"][k]), f"generator.{k} differs after the stop and resume"


def test_file_that_one_rank_cannot_read_stops_every_rank_with_one_line(tmp_path):
    (tmp_path / "pretrained.pt").write_bytes(b"not read: the check comes first")
    done = _launch("unreadable", tmp_path)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    # every rank stops with the same line (torchrun may end the second rank before it prints)
    assert 1 <= len(lines) <= 2 and len(set(lines)) == 1, done.stderr[-3000:]
    assert "training/loop.py" not in done.stderr  # no rank died with a traceback (torchrun prints its own)
    assert f"--pretrained {tmp_path / 'pretrained.pt'}: cannot be read on rank 1 (host " in lines[0]
    assert "rank 0" not in lines[0] and "filesystem" in lines[0]


if __name__ == "__main__":  # a torchrun rank (see the module docstring; PYTHONPATH holds REPO)
    _worker(sys.argv[1], sys.argv[2])
