"""--continue_from: a new run that continues another run's epoch-E checkpoint and changes only an arm's keys.

The tiny supervised run ``original`` trains 4 epochs (lr x 0.1 after epoch 3) and keeps its epoch-2 snapshot;
its continuation with nothing changed must reproduce its epochs 3 and 4 bit for bit, and every arm continued
from the snapshot must see the data batches the original saw in epoch 3.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil

import pytest
import torch
from conftest import error_line, fingerprint

import train_adversarial
import train_supervised
import training.loop
from checkpoint import load_checkpoint

STEPS_PER_EPOCH = 4  # config.tiny: 16 synthetic train images, batch 4


def _train(entry, root, name: str, *extra: str) -> None:
    entry.main(["--config", "config.tiny", "--device", "cpu", "--save_root", str(root), "--model_name", name,
                "--max_val_samples", "4", "--set", "lr_milestones=[3]", *extra])


def _digest(batch: dict) -> str:
    """sha256 of a batch as a step receives it: images (crop and augmentation), targets, joints."""
    h = hashlib.sha256()
    for key in ("image", "heatmaps", "occlusion", "annotated", "joints"):
        h.update(batch[key].contiguous().numpy().tobytes())
    return h.hexdigest()


@contextlib.contextmanager
def _batches_seen(crash_at: int | None = None):
    """The digest of every batch the trainer steps on, in order; ``crash_at``: the trainer is killed (Ctrl-C)
    before that step (1-based)."""
    seen, real = [], training.loop.train_step

    def recording(nets, opts, batch, *args, **kwargs):
        if len(seen) + 1 == crash_at:
            raise KeyboardInterrupt
        seen.append(_digest(batch))
        return real(nets, opts, batch, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training.loop, "train_step", recording)
        yield seen


def _epochs(run_dir) -> list[dict]:
    """The epoch lines of a run's log without their timings."""
    lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in lines]


def _assert_same(a, b, where: str = "checkpoint") -> None:
    """Tensors bit for bit (torch.equal), everything else equal, recursively."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """(runs folder, the original run's folder, the batches of its 4 epochs)."""
    root = tmp_path_factory.mktemp("runs")
    with _batches_seen() as seen:
        _train(train_supervised, root, "original", "--epochs", "4", "--set", "snapshot_epochs=[2]")
    assert len(seen) == 4 * STEPS_PER_EPOCH
    return root, root / "original", seen


@pytest.mark.parametrize("workers", [0, 2])
def test_a_continuation_that_changes_nothing_reproduces_the_original_bit_for_bit(original, workers):
    """Arm S1: the supervised trainer continues the epoch-2 snapshot to epoch 4: the same batches (the original
    ran with 0 workers), G's weights, optimiser and schedule and the logged losses and val PCK of epochs 3-4."""
    root, run, seen = original
    name = f"s1-w{workers}"
    with _batches_seen() as continued:
        _train(train_supervised, root, name, "--epochs", "4", "--continue_from", str(run / "epoch_2.pt"),
               "--workers", str(workers))
    assert continued == seen[2 * STEPS_PER_EPOCH:]
    mine, theirs = load_checkpoint(str(root / name / "last.pt")), load_checkpoint(str(run / "last.pt"))
    for key in ("generator", "optimizers", "schedulers", "scalers"):
        _assert_same(mine[key], theirs[key], key)
    assert mine["state"]["iteration"] == theirs["state"]["iteration"] == 4 * STEPS_PER_EPOCH
    assert mine["optimizers"]["generator"]["param_groups"][0]["lr"] == pytest.approx(2.5e-5)  # the drop came
    assert _epochs(root / name) == _epochs(run)[2:]


def test_a_continued_run_resumes_like_any_run_and_keeps_its_lineage(original):
    """A continuation killed in its second epoch (last.pt every 2 steps), then resumed: the original's final G,
    bit for bit; config.json and every checkpoint name the snapshot it continued (path, sha256, epoch)."""
    root, run, _ = original
    snapshot = run / "epoch_2.pt"
    with pytest.raises(SystemExit) as killed, _batches_seen(crash_at=STEPS_PER_EPOCH + 3):
        _train(train_supervised, root, "legs", "--epochs", "4", "--continue_from", str(snapshot),
               "--set", "checkpoint_every=2")
    assert killed.value.code == 130
    assert load_checkpoint(str(root / "legs" / "last.pt"))["state"]["epoch_step"] == 2  # mid-epoch
    train_supervised.main(["--resume", str(root / "legs"), "--device", "cpu"])
    mine = load_checkpoint(str(root / "legs" / "last.pt"))
    _assert_same(mine["generator"], load_checkpoint(str(run / "last.pt"))["generator"], "generator")
    source = {"path": str(snapshot), "sha256": hashlib.sha256(snapshot.read_bytes()).hexdigest(), "epoch": 2,
              "iteration": 2 * STEPS_PER_EPOCH, "run_id": load_checkpoint(str(snapshot))["run_id"]}
    assert mine["continued_from"] == source
    assert json.loads((root / "legs" / "config.json").read_text())["continued_from"] == source
    assert mine["run_id"] != source["run_id"]
    assert "continued_from" not in json.loads((run / "config.json").read_text())


@pytest.mark.slow
def test_algorithm1_without_p_and_c_continues_on_the_originals_next_epoch(original):
    """Arm S2 (two error-loss updates per batch): its epochs step on the original's epoch-3 and epoch-4
    batches, with G's optimiser state carried over (its step count goes on from the snapshot's)."""
    root, run, seen = original
    before = fingerprint(run)
    with _batches_seen() as continued:
        _train(train_adversarial, root, "s2", "--epochs", "4", "--continue_from", str(run / "epoch_2.pt"),
               "--no_pose_disc", "--no_conf_disc")
    assert continued[:STEPS_PER_EPOCH] == seen[2 * STEPS_PER_EPOCH:3 * STEPS_PER_EPOCH]
    assert continued == seen[2 * STEPS_PER_EPOCH:]
    ckpt = load_checkpoint(str(root / "s2" / "last.pt"))
    assert ckpt["method"] == "adversarial" and set(ckpt["optimizers"]) == {"generator"}
    assert ckpt["state"]["epoch"] == 4 and ckpt["state"]["iteration"] == 4 * STEPS_PER_EPOCH
    step = ckpt["optimizers"]["generator"]["state"][0]["step"]
    assert step == 2 * STEPS_PER_EPOCH + 2 * 2 * STEPS_PER_EPOCH  # 8 updates carried over, then 2 per batch
    assert [r["epoch"] for r in _epochs(root / "s2")] == [2, 3]  # the log numbers the original's epochs on
    assert fingerprint(run) == before  # the original run is only read


def test_algorithm1_with_p_and_c_continues_with_fresh_discriminators_on_the_runs_schedule(original):
    """Arm A: P and C are built fresh and follow the run's milestones (lr x 0.1 after epoch 3, as G)."""
    root, run, _ = original
    _train(train_adversarial, root, "a", "--epochs", "4", "--continue_from", str(run / "epoch_2.pt"))
    ckpt = load_checkpoint(str(root / "a" / "last.pt"))
    assert {"pose_disc", "conf_disc"} <= set(ckpt) and ckpt["state"]["epoch"] == 4
    for name in ("generator", "pose_disc", "conf_disc"):
        assert ckpt["schedulers"][name]["last_epoch"] == 4
    assert ckpt["optimizers"]["pose_disc"]["param_groups"][0]["lr"] == pytest.approx(2.5e-5)
    assert ckpt["optimizers"]["pose_disc"]["state"][0]["step"] == 2 * 2 * STEPS_PER_EPOCH  # P: fresh, 2 per batch
    log = _epochs(root / "a")
    assert [r["epoch"] for r in log] == [2, 3] and all("L_P_gen" in r for r in log)


# ---- refusals: one line, before anything is written -------------------------------------------------------------

@pytest.fixture
def snapshot(tiny_run_dir, tmp_path):
    """A copy of a finished one-epoch tiny supervised run (its last.pt: epoch 1, at the boundary)."""
    shutil.copytree(tiny_run_dir, tmp_path / "src")
    return tmp_path / "src" / "last.pt"


def _continue(entry, snapshot, *extra: str) -> list[str]:
    return ["--config", "config.tiny", "--device", "cpu", "--save_root", str(snapshot.parent.parent),
            "--model_name", "new", "--continue_from", str(snapshot), "--epochs", "2", *extra]


def test_a_config_key_beyond_the_arms_refuses_the_continuation(snapshot, capsys):
    line = error_line(train_adversarial, _continue(train_adversarial, snapshot, "--lr", "1e-3", "--batch_size", "2"),
                      capsys)
    assert "--continue_from" in line and "lr=0.001 (checkpoint: 0.00025)" in line and "batch_size=2" in line
    assert not (snapshot.parent.parent / "new" / "last.pt").exists()


def test_fewer_epochs_than_the_original_or_other_data_are_refused(snapshot, capsys):
    ckpt = torch.load(snapshot, weights_only=True)
    ckpt["config"]["epochs"] = 3  # the original planned 3 epochs and kept a checkpoint after its first
    torch.save(ckpt, snapshot)
    line = error_line(train_supervised, _continue(train_supervised, snapshot), capsys)
    assert "epochs=2 (checkpoint: 3)" in line
    line = error_line(train_supervised, _continue(train_supervised, snapshot, "--epochs", "3",
                                                  "--max_train_samples", "4"), capsys)
    assert "data differs" in line and "max_train_samples=4 (checkpoint: 8)" in line


def test_pretrained_or_resume_with_continue_from_is_refused(snapshot, capsys):
    line = error_line(train_adversarial, _continue(train_adversarial, snapshot, "--pretrained", str(snapshot)),
                      capsys)
    assert "--pretrained and --continue_from exclude each other" in line
    line = error_line(train_supervised, _continue(train_supervised, snapshot, "--resume", str(snapshot.parent)),
                      capsys)
    assert "--continue_from and --resume exclude each other" in line


def test_a_mid_epoch_checkpoint_or_the_checkpoints_own_folder_is_refused(snapshot, capsys):
    before = fingerprint(snapshot.parent)
    line = error_line(train_supervised, _continue(train_supervised, snapshot, "--model_name", "src", "--overwrite"),
                      capsys)
    assert "would write into the run it continues" in line
    assert fingerprint(snapshot.parent) == before
    ckpt = torch.load(snapshot, weights_only=True)
    ckpt["state"].update(epoch=0, epoch_step=1, iteration=1)
    mid = snapshot.parent / "mid.pt"
    torch.save(ckpt, mid)
    line = error_line(train_supervised, _continue(train_supervised, mid), capsys)
    assert "1 steps into epoch 1" in line and "epoch boundary" in line
