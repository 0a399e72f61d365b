"""scripts/study-adversarial.sh at toy scale on lspet-mini (the lspet-9k layout): the supervised arm with its
snapshot, resumed and skipped; the arms that continue it, once train_adversarial.py has --continue_from."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "study-adversarial.sh")


def _toy(tmp_path, lspet_root: str, *arms: str) -> list[str]:
    return ["--data", lspet_root, "--config", "config.tiny", "--epochs", "2", "--snapshot_epoch", "1", "--drop", "2",
            "--seeds", "0", "--train_samples", "32", "--val_samples", "48", "--bootstrap", "200",
            "--results", str(tmp_path / "results"), "--runs", str(tmp_path / "runs"),
            "--outputs", str(tmp_path / "outputs"), "--arms", *arms]


def _study(*flags: str, expect: int = 0) -> subprocess.CompletedProcess:
    done = subprocess.run(["bash", SCRIPT, *flags], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == expect, done.stderr[-3000:]
    return done


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _can_continue() -> bool:
    done = subprocess.run([sys.executable, os.path.join(REPO, "train_adversarial.py"), "--help"],
                          capture_output=True, text=True)
    return "--continue_from" in done.stdout


@pytest.mark.slow
def test_supervised_arm_resumes_keeps_its_snapshot_and_is_skipped_once_recorded(tmp_path, lspet_root):
    import train_supervised

    toy = _toy(tmp_path, lspet_root)
    runs = tmp_path / "runs"
    # a half-done S1 (1 of its 2 epochs), as a stopped session leaves it
    train_supervised.main(["--dataset", "lspet", "--path", lspet_root, "--train_split", "train", "--config",
                           "config.tiny", "--device", "cpu", "--save_root", str(runs), "--epochs", "1", "--set",
                           "lr_milestones=[2]", "--set", "checkpoint_every=100", "--max_train_samples", "32",
                           "--max_val_samples", "48", "--model_name", "S1-s0", "--seed", "0", "--set",
                           "snapshot_epochs=[1]"])
    first_epoch = (runs / "S1-s0" / "log.jsonl").read_text().splitlines()[0]
    _study(*toy)
    log = (runs / "S1-s0" / "log.jsonl").read_text().splitlines()
    assert len(log) == 2 and log[0] == first_epoch  # resumed: epoch 0 kept, epoch 1 trained
    assert (runs / "S1-s0" / "epoch_1.pt").exists()  # the snapshot the arms continue
    results = tmp_path / "results"
    record = json.loads((results / "S1-s0.json").read_text())
    assert (record["method"], record["seed"], record["epochs"], record["start_epoch"]) == ("S1", 0, 2, 0)
    assert len(record["per_sample"]["hits"]) == 48 and record["config"]["delta"] == 0.2  # PCK@0.2's threshold
    assert record["isa"] and record["precision"] == "fp32" and record["machine"] and record["wall_seconds"] > 0
    weights = results / "weights" / "S1-s0.pt"
    assert record["g_export"] == os.path.join("weights", "S1-s0.pt") and record["g_sha256"] == _sha256(weights)
    summary = (results / "summary.md").read_text()
    assert f"| S1-s0 | weights/S1-s0.pt | `{_sha256(weights)}` |" in summary
    assert "| S1 | 0 |" in summary and (results / "curves.png").exists() and (results / "logs" / "S1-s0").is_dir()

    stamps = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    again = _study(*toy)
    assert "S1-s0 done" in again.stdout and "train_supervised.py" not in again.stdout
    assert stamps == {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    assert not list(runs.glob("*.old-*"))  # nothing moved aside either
    if not _can_continue():  # the arms need the continuation: one line, after S1 is done
        stopped = _study(*toy, "S2", expect=2)
        assert "has no --continue_from yet" in stopped.stderr


def test_bad_flags_are_refused_with_one_line(tmp_path, lspet_root):
    done = _study("--data", str(tmp_path / "none"), expect=2)
    assert "has no joints.mat" in done.stderr
    done = _study(*_toy(tmp_path, lspet_root, "B"), expect=2)
    assert "--arms: unknown B" in done.stderr
    done = _study("--data", lspet_root, "--epochs", "8", "--snapshot_epoch", "8", expect=2)
    assert "--snapshot_epoch" in done.stderr


@pytest.mark.slow
@pytest.mark.skipif(not _can_continue(), reason="train_adversarial.py has no --continue_from yet")
def test_arms_continue_the_supervised_snapshot_and_are_summarised(tmp_path, lspet_root):
    toy = _toy(tmp_path, lspet_root, "S2", "A", "A-literal")
    _study(*toy)
    results = tmp_path / "results"
    records = {p.stem: json.loads(p.read_text()) for p in results.glob("*.json")}
    assert sorted(records) == ["A-literal-s0", "A-s0", "S1-s0", "S2-s0"]
    for name, r in records.items():
        arm = name.removesuffix("-s0")
        assert (r["method"], r["seed"], r["epochs"], r["config"]["seed"]) == (arm, 0, 2, 0)
        assert r["start_epoch"] == (0 if arm == "S1" else 1) and r["config"]["delta"] == 0.2
        epochs = [json.loads(line)["epoch"] for line in (results / "logs" / name / "log.jsonl").read_text().splitlines()
                  if json.loads(line).get("kind", "epoch") == "epoch"]
        assert epochs == ([0, 1] if arm == "S1" else [1])  # an arm continues S1 from epoch E = 1: no replay
        weights = results / "weights" / f"{name}.pt"
        assert r["g_sha256"] == _sha256(weights)
    s2, a, literal = records["S2-s0"]["config"], records["A-s0"]["config"], records["A-literal-s0"]["config"]
    assert (s2["use_pose_disc"], s2["use_conf_disc"], s2["g_error_step"]) == (False, False, True)
    assert (a["use_pose_disc"], a["use_conf_disc"], a["g_adv_form"], a["mse_scale"]) == (True, True, "paper",
                                                                                        "pixel_mean")
    assert literal["mse_scale"] == "eq1_literal"
    assert records["A-s0"]["adv_grad_ratio"] and "adv_grad_ratio" not in records["S2-s0"]
    summary = (results / "summary.md").read_text()
    for row in ("| A − S2 | 0 |", "| S2 − S1 | 0 |", "| A-literal − S2 | 0 |"):
        assert row in summary
    assert (results / "curves.png").exists() and (results / "grad_ratio.png").exists()
    stamps = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    assert _study(*toy).stdout.count("skipped") == 4
    assert stamps == {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
