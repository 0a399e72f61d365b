"""Shared fixtures and helpers: where the repository and the real shared data live (``../shared/data`` beside
it), a finished tiny run, and the tiny config, run description, nets and step context that many tests build."""

from __future__ import annotations

import hashlib
import json
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("POSE_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))


def shared_path(*parts: str) -> str:
    """Path under the shared data folder; skips the test when it is absent (CI's .ci/run insists on it)."""
    path = os.path.join(SHARED_DATA, *parts)
    if not os.path.exists(path):
        pytest.skip(f"shared data not found: {path}")
    return path


@pytest.fixture
def mpii_root() -> str:
    """Folder holding annot/valid.h5 (real MPII validation annotations, no images)."""
    return shared_path("mpii")


@pytest.fixture
def lsp_root() -> str:
    """Folder holding the original LSP joints.mat (no images)."""
    return shared_path("lsp")


@pytest.fixture
def lspet_root() -> str:
    """Folder holding lspet-mini: 2000 real 128x128 photos and joints.mat."""
    return shared_path("lspet-mini")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny test models run fastest on one thread; two threads stall on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory):
    """A finished one-epoch tiny supervised run on the synthetic data (shared read-only by several modules)."""
    import train_supervised

    root = tmp_path_factory.mktemp("runs")
    train_supervised.main(["--config", "config.tiny", "--device", "cpu", "--save_root", str(root), "--model_name",
                           "run", "--max_train_samples", "8", "--max_val_samples", "4"])
    return root / "run"


@pytest.fixture(scope="session")
def run_dir(tiny_run_dir):
    """The finished tiny run above, under the name the prediction and export tests read it by."""
    return tiny_run_dir


def tiny_cfg(method: str = "supervised", **overrides):
    """``config.tiny`` for ``method`` with ``overrides``, resolved as ``tiny_config``."""
    return tiny_config({"method": method, **overrides})


def synthetic_spec(run_dir, **extra):
    """The RunSpec of a tiny synthetic run in ``run_dir``: CPU, 16 train and 4 val samples unless ``extra``
    says otherwise."""
    from training.run import RunSpec

    return RunSpec(**{"dataset": "synthetic", "path": None, "train_split": "train", "val_split": "val",
                      "run_dir": str(run_dir), "device": "cpu", "max_train_samples": 16, "max_val_samples": 4,
                      **extra})


def cpu_step_context():
    """The StepContext of an fp32 update on the CPU, NCHW, no clipping, a disabled scaler per network."""
    import torch

    from training.steps import StepContext

    scalers = {k: torch.amp.GradScaler("cpu", enabled=False) for k in ("generator", "pose_disc", "conf_disc")}
    return StepContext(torch.device("cpu"), None, scalers, 0.0, False)


def tiny_nets(cfg, seed: int = 0, num_joints: int = 16):
    """The networks ``cfg`` asks for (16 joints: the synthetic dataset's MPII layout), initialised from ``seed``."""
    import torch

    from training.build import build_nets

    torch.manual_seed(seed)
    return build_nets(cfg, num_joints)[0]


def log_records(run_dir) -> list[dict]:
    """Every record of ``run_dir/log.jsonl``."""
    with open(os.path.join(run_dir, "log.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def assert_same_last_checkpoint(a_dir, b_dir, nets: list[str]) -> None:
    """The ``last.pt`` of two run directories hold the same weights of ``nets`` at the same iteration."""
    import torch

    from checkpoint import load_checkpoint

    a, b = load_checkpoint(str(a_dir / "last.pt")), load_checkpoint(str(b_dir / "last.pt"))
    for net in nets:
        assert a[net].keys() == b[net].keys()
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k} differs after the stop and resume"
    assert a["state"]["iteration"] == b["state"]["iteration"]


def lspet_folder(root, joints) -> str:
    """An LSPET folder (joints.mat only) holding ``joints`` (14, 3, N)."""
    import scipy.io

    os.makedirs(root, exist_ok=True)
    scipy.io.savemat(os.path.join(root, "joints.mat"), {"joints": joints})
    return str(root)


def lspet_joints(n: int):
    """(14, 3, n) LSPET joints: every joint annotated, at uniform random positions inside a 64 px image."""
    import numpy as np

    joints = np.ones((14, 3, n))
    joints[:, :2] = np.random.default_rng(0).uniform(10, 54, (14, 2, n))
    return joints


def tiny_config(overrides: dict | None = None):
    """config.tiny with ``overrides``, resolved for the MPII-like 16-joint batches of ``adversarial_batch`` as a
    run resolves it for its dataset (delta None -> PCKh's 0.5)."""
    from config import load_config
    from datasets.skeleton import MPII
    from training.build import resolve_for_dataset

    return resolve_for_dataset(load_config("tiny", overrides), MPII)


def adversarial_batch(n: int = 4, res: int = 64, out: int = 16, joints_count: int = 16) -> dict:
    """A deterministic batch in the format of ``training.steps.to_device``: Gaussian targets at random joints
    (input px), the first sample's first 3 joints unlabelled, ~30% of joints occluded, identity crop affine."""
    import torch

    g = torch.Generator().manual_seed(0)
    joints = torch.rand(n, joints_count, 2, generator=g) * (res - 8) + 4  # input px
    hm_xy = (joints + 0.5) * out / res - 0.5
    ys, xs = torch.meshgrid(torch.arange(out, dtype=torch.float32), torch.arange(out, dtype=torch.float32),
                            indexing="ij")
    heatmaps = torch.exp(-((xs - hm_xy[..., 0, None, None]) ** 2 + (ys - hm_xy[..., 1, None, None]) ** 2) / 2)
    annotated = torch.ones(n, joints_count)
    annotated[0, :3] = 0
    occluded = (torch.rand(n, joints_count, generator=g) < 0.3).float()
    return {"image": torch.randn(n, 3, res, res, generator=g), "heatmaps": heatmaps,
            "occlusion": heatmaps * occluded[..., None, None], "annotated": annotated, "joints": joints,
            "affine": torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64).expand(n, 2, 3).clone(),
            "ref_length": torch.full((n,), 40.0, dtype=torch.float64)}


def rmsprop_per_net(nets) -> dict:
    """One plain RMSprop (lr 1e-3) per network present, keyed as the trainer keys its optimisers."""
    import torch

    return {k: torch.optim.RMSprop(getattr(nets, k).parameters(), lr=1e-3)
            for k in ("generator", "pose_disc", "conf_disc") if getattr(nets, k) is not None}


def last_line(err: str) -> str:
    """The last line of stderr, after any progress bar (tqdm draws with carriage returns)."""
    return re.split(r"[\r\n]+", err.strip())[-1]


def error_line(entry, argv: list[str], capsys, code: int = 2) -> str:
    """Run an entry point's main: exit ``code``, exactly one ``error:`` line, the last one, no traceback."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        entry.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == code, err
    assert "Traceback" not in err and err.count("error:") == 1, err
    line = last_line(err)
    assert line.startswith("error: "), err
    return line


def fingerprint(folder) -> dict[str, str]:
    """sha256 of every file below ``folder`` (hidden temp files included), by relative path."""
    out = {}
    for base, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out
