"""DDP on CPU: two gloo processes launched by torchrun train the tiny model; both ranks must end with the
same weights, only rank 0 writes, and the sharded-then-gathered validation equals a single-process
validation of the saved checkpoint.

The worker is this file run as a script under ``python -m torch.distributed.run``: it builds the real run
(``build_run``, so ``init_distributed`` reads torchrun's RANK/WORLD_SIZE/MASTER_* variables), fits, and dumps
its own networks and validation result to ``<dir>/<method>-rank<r>.pt``. No test hook lives in the
training code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO

pytestmark = pytest.mark.slow  # subprocess runs end to end
# val size 7 over 2 ranks: the eval sampler pads with a wrap-around duplicate that the gather must drop
OVERRIDES = {"epochs": 2, "batch_size": 4, "synthetic_train_size": 16, "synthetic_val_size": 7, "workers": 0}
METHODS = ("supervised", "adversarial")


def _worker(method: str, out_dir: str) -> None:
    """One rank: train ``method`` with the real training loop, then dump what the test compares."""
    from config import load_config
    from training.loop import fit
    from training.run import RunSpec, build_run
    from training.steps import raw_module

    spec = RunSpec(dataset="synthetic", path=None, train_split="train", val_split="val",
                   run_dir=os.path.join(out_dir, method), device="cpu")
    run = build_run(load_config("tiny", {**OVERRIDES, "method": method}), spec)
    val = fit(run)
    dump = {"nets": {k: raw_module(v).state_dict() for k, v in run.nets.named().items()},
            "world_size": run.dist.world_size, "mean": val["mean"], "index": val["index"], "preds": val["preds"]}
    torch.save(dump, os.path.join(out_dir, f"{method}-rank{run.dist.rank}.pt"))


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One torchrun launch per method (a fresh process group each: re-initialising the default group in the
    same processes could read the previous group's rendezvous keys)."""
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    for method in METHODS:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
               os.path.abspath(__file__), method, str(out)]
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=150)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("method", METHODS)
def test_both_ranks_end_with_rank0_checkpoint_weights(ddp_run, method):
    r0, r1 = (torch.load(ddp_run / f"{method}-rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    ckpt = torch.load(ddp_run / method / "last.pt", weights_only=True)
    assert set(r0["nets"]) == set(r1["nets"]) == ({"generator"} if method == "supervised"
                                                   else {"generator", "pose_disc", "conf_disc"})
    for net, state in r0["nets"].items():
        # G's BN statistics too: validation's DDP forward broadcast rank 0's buffers before predicting.
        # P and C update theirs locally in G's step (outside DDP), so only their parameters must agree.
        keys = state if net == "generator" else [k for k in state if "running" not in k and "batches" not in k]
        for k in keys:
            assert torch.equal(state[k], r1["nets"][net][k]), f"{net}.{k} differs between ranks"
            assert torch.equal(state[k], ckpt[net][k]), f"{net}.{k} differs from rank 0's checkpoint"


@pytest.mark.parametrize("method", METHODS)
def test_only_rank0_logs_and_checkpoints(ddp_run, method):
    run = ddp_run / method
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if r.get("kind") == "epoch"] == [0, 1]  # one record per epoch, not per rank
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["state"]["epoch"] == 2 and ckpt["state"]["iteration"] == 2 * 16 // (4 * 2)  # sharded epochs
    assert not [p for p in os.listdir(run) if p.startswith(".tmp-")]


@pytest.mark.parametrize("method", METHODS)
def test_gathered_validation_equals_single_process_on_the_checkpoint(ddp_run, method):
    from datasets import build_dataset
    from inference.evaluate import evaluate, inference_settings, make_eval_loader
    from inference.scoring import score_predictions
    from inference.weights import generator_from_checkpoint

    r0, r1 = (torch.load(ddp_run / f"{method}-rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["mean"] == r1["mean"]  # every rank gets the gathered result
    np.testing.assert_array_equal(r0["index"], np.arange(7))  # each sample once, in order, padding dropped
    ckpt = torch.load(ddp_run / method / "last.pt", weights_only=True)
    cfg, generator = generator_from_checkpoint(ckpt)
    if cfg.channels_last:
        generator = generator.to(memory_format=torch.channels_last)
    val_set = build_dataset("synthetic", None, "val", cfg, train=False)
    cpu = torch.device("cpu")
    settings = inference_settings(cfg, val_set.spec, cpu, cfg.flip_test)  # the training loop's validation settings
    single = evaluate(generator, make_eval_loader(val_set, cfg.batch_size, 0), val_set, settings, cpu)
    np.testing.assert_array_equal(single["index"], r0["index"])
    np.testing.assert_allclose(single["preds"], r0["preds"], atol=1e-6)
    assert single["mean"] == pytest.approx(r0["mean"], abs=1e-9)
    # the tiny model scores ~0 at PCKh@0.5; a loose threshold makes the comparison non-trivial
    loose = [score_predictions(p, val_set, 3.0, indices=r0["index"])["mean"] for p in (single["preds"], r0["preds"])]
    assert loose[0] == loose[1] > 0


def test_ddp_launch_scripts_show_their_torchrun_flags():
    launcher = open(os.path.join(REPO, "scripts", "ddp-launch.sh")).read()  # both scripts launch through it
    for flag in ("torchrun", "--nproc_per_node", "--nnodes", "--node_rank", "--master_addr", "--master_port"):
        assert flag in launcher, f"ddp-launch.sh lacks {flag}"
    for name in ("train-supervised-ddp.sh", "train-adversarial-ddp.sh", "ddp-launch.sh"):
        path = os.path.join(REPO, "scripts", name)
        assert name == "ddp-launch.sh" or "source scripts/ddp-launch.sh" in open(path).read()
        assert subprocess.run(["bash", "-n", path]).returncode == 0


if __name__ == "__main__":  # a torchrun rank (see the module docstring; PYTHONPATH holds REPO)
    _worker(sys.argv[1], sys.argv[2])
