"""scripts/export.py: weights-only files (fp32 and fp16) that test.py and predict.py take, and the ONNX graph."""

from __future__ import annotations

import json
import os
import sys

import cv2
import h5py
import numpy as np
import pytest
import torch

import predict
import test as test_entry
import train_supervised
from config import config_from_dict, load_config
from datasets import build_dataset
from inference.export import EXPORT_FORMAT
from inference.weights import generator_from_checkpoint
from models import build_generator
from scripts import export
from training.build import generator_args


@pytest.fixture(scope="module")
def exports(run_dir, tmp_path_factory):
    """(fp32 export, fp16 export) of the run's best.pt."""
    folder = tmp_path_factory.mktemp("exports")
    export.main([str(run_dir / "best.pt"), str(folder / "g.pt")])
    export.main([str(run_dir / "best.pt"), str(folder / "g16.pt"), "--fp16"])
    return folder / "g.pt", folder / "g16.pt"


def _test_py(checkpoint, out) -> tuple[dict, np.ndarray]:
    result = test_entry.main(["--checkpoint", str(checkpoint), "--dataset", "synthetic", "--output", str(out),
                              "--max_samples", "4", "--workers", "0", "--device", "cpu", "--num_pictures", "0"])
    with h5py.File(out / "predictions.h5") as f:
        return result, f["preds"][()]


def test_export_is_weights_only_and_scores_like_the_checkpoint(run_dir, exports, tmp_path):
    path, _ = exports
    ckpt = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)
    record = torch.load(path, map_location="cpu", weights_only=True)
    assert set(record) == {"format", "format_version", "generator", "model_args", "config", "dataset", "method",
                           "weights_dtype", "source"}
    assert record["format"] == EXPORT_FORMAT and record["weights_dtype"] == "float32"
    assert record["model_args"] == ckpt["model_args"] and record["dataset"] == "synthetic"
    assert record["config"] == config_from_dict(ckpt["config"]).to_dict()
    assert json.loads(json.dumps(record["config"])) == record["config"]  # plain types only
    assert record["source"]["epoch"] == ckpt["state"]["epoch"]
    for name, tensor in ckpt["generator"].items():
        assert torch.equal(record["generator"][name], tensor), name
    assert os.path.getsize(path) < os.path.getsize(run_dir / "best.pt")  # no optimiser state, no P or C

    from_ckpt, preds_ckpt = _test_py(run_dir / "best.pt", tmp_path / "ckpt")
    from_export, preds_export = _test_py(path, tmp_path / "export")
    np.testing.assert_array_equal(preds_export, preds_ckpt)
    assert from_export == from_ckpt

    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.random.default_rng(0).integers(0, 255, (70, 50, 3), dtype=np.uint8))
    (a,), (b,) = (predict.main(["--checkpoint", str(c), "--image", str(photo), "--output", str(tmp_path / n),
                                "--device", "cpu"]) for c, n in ((run_dir / "best.pt", "p1"), (path, "p2")))
    assert a["joints"] == b["joints"]


def test_fp16_export_is_half_the_size_and_predicts_the_same(exports, tmp_path):
    path, path16 = exports
    record = torch.load(path16, map_location="cpu", weights_only=True)
    assert record["weights_dtype"] == "float16"
    statistics = {n for n in record["generator"] if n.endswith(("running_mean", "running_var"))}
    assert statistics and all(record["generator"][n].dtype == torch.float32 for n in statistics)
    assert all(t.dtype == torch.float16 for n, t in record["generator"].items()
               if t.is_floating_point() and n not in statistics)
    payload = {p: sum(t.numel() * t.element_size() for n, t in torch.load(p, weights_only=True)["generator"].items()
                      if n not in statistics) for p in (path, path16)}
    assert 0.5 <= payload[path16] / payload[path] < 0.51  # int64 BatchNorm counters stay as they are

    _, g32 = generator_from_checkpoint(torch.load(path, weights_only=True))
    _, g16 = generator_from_checkpoint(record)
    assert all(p.dtype == torch.float32 for p in g16.state_dict().values() if p.is_floating_point())
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        h32, h16 = g32.eval()(images)["pose"][-1], g16.eval()(images)["pose"][-1]
    assert not torch.equal(h32, h16)  # the weights were rounded
    torch.testing.assert_close(h16, h32, rtol=0, atol=2e-3 * float(h32.abs().max()))

    (_, preds32), (_, preds16) = _test_py(path, tmp_path / "a"), _test_py(path16, tmp_path / "b")
    # argmax decoding: heatmaps this close move a peak by one heatmap cell at most (box side / output_res px)
    cell = build_dataset("synthetic", None, "val", load_config("tiny"), train=False).ann.box_sizes[:4] / 16
    moved = np.abs(preds16 - preds32).max(axis=-1)
    assert (moved <= cell[:, None] + 1e-6).all() and np.mean(moved == 0) > 0.9


def test_fp16_file_of_a_real_size_model_is_about_half(tmp_path):
    """config.cpu_small's G (a few MB): the file size is the weights', so --fp16 halves it."""
    cfg = load_config("cpu_small")
    args = generator_args(cfg, 16)
    torch.save({"generator": build_generator(args).state_dict(), "model_args": args, "config": cfg.to_dict(),
                "dataset": "mpii"}, tmp_path / "ckpt.pt")
    export.main([str(tmp_path / "ckpt.pt"), str(tmp_path / "g.pt")])
    export.main([str(tmp_path / "ckpt.pt"), str(tmp_path / "g16.pt"), "--fp16"])
    assert os.path.getsize(tmp_path / "g.pt") > 2**20
    assert 0.48 < os.path.getsize(tmp_path / "g16.pt") / os.path.getsize(tmp_path / "g.pt") < 0.53


def test_fp16_export_keeps_batchnorm_statistics_past_float16s_range(run_dir, tmp_path, capsys):
    """A convolution before BatchNorm can grow until its output variance passes 65504 (seen in a 32-epoch lspet-9k
    run): the fp16 export keeps that statistic and predicts as the fp32 one does; a weight that large is refused."""
    ckpt = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)
    name = next(n for n in ckpt["generator"] if n.endswith("running_var"))
    weight = name.removesuffix("running_var") + "weight"
    ckpt["generator"][name] = ckpt["generator"][name] * 1e6  # with its scale x 1e3: the same output
    ckpt["generator"][weight] = ckpt["generator"][weight] * 1e3
    torch.save(ckpt, tmp_path / "big.pt")
    export.main([str(tmp_path / "big.pt"), str(tmp_path / "g.pt")])
    export.main([str(tmp_path / "big.pt"), str(tmp_path / "g16.pt"), "--fp16"])
    record = torch.load(tmp_path / "g16.pt", weights_only=True)
    assert torch.equal(record["generator"][name], ckpt["generator"][name]) and record["generator"][name].max() > 65504
    (_, preds32), (_, preds16) = _test_py(tmp_path / "g.pt", tmp_path / "a"), _test_py(tmp_path / "g16.pt",
                                                                                      tmp_path / "b")
    assert np.mean(np.abs(preds16 - preds32).max(axis=-1) == 0) > 0.9

    ckpt["generator"][weight] = ckpt["generator"][weight] * 1e3
    torch.save(ckpt, tmp_path / "bigger.pt")
    with pytest.raises(SystemExit) as exc:
        export.main([str(tmp_path / "bigger.pt"), str(tmp_path / "g16b.pt"), "--fp16"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"generator tensor {weight} exceeds float16's range" in err
    assert not (tmp_path / "g16b.pt").exists()


def test_onnx_export_matches_torch(run_dir, tmp_path, capsys):
    pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    out, graph = tmp_path / "g.pt", tmp_path / "g.onnx"
    export.main([str(run_dir / "best.pt"), str(out), "--onnx", str(graph)])
    assert "onnxruntime matches torch" in capsys.readouterr().out

    _, generator = generator_from_checkpoint(torch.load(out, weights_only=True))
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))  # another batch size
    with torch.no_grad():
        expected = generator.eval()(images)["pose"][-1].numpy()
    session = onnxruntime.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    got = session.run(["heatmaps"], {"image": images.numpy()})[0]
    assert got.shape == (3, 16, 16, 16)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    meta = {p.key: p.value for p in __import__("onnx").load(str(graph)).metadata_props}
    assert meta["input_res"] == "64" and json.loads(meta["joints"])[0] == "r_ankle"


def test_onnx_without_the_packages(run_dir, tmp_path, monkeypatch, capsys):
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "onnx", None)  # as if not installed
        with pytest.raises(SystemExit) as exc:
            export.main([str(run_dir / "best.pt"), str(tmp_path / "g.pt"), "--onnx", str(tmp_path / "g.onnx")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "'onnx'" in err and err.startswith("error: --onnx")
    assert os.listdir(tmp_path) == []  # nothing written

    pytest.importorskip("onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    export.main([str(run_dir / "best.pt"), str(tmp_path / "g.pt"), "--onnx", str(tmp_path / "g.onnx")])
    assert "onnxruntime not installed: check skipped" in capsys.readouterr().out
    assert (tmp_path / "g.onnx").stat().st_size > 0


def test_export_refusals(run_dir, exports, tmp_path, capsys):
    path, _ = exports
    before = path.read_bytes()
    with pytest.raises(SystemExit) as exc:
        export.main([str(run_dir / "best.pt"), str(path)])
    assert exc.value.code == 2 and f"output: 1 file would be replaced ({path}); pass --overwrite" in \
        capsys.readouterr().err
    assert path.read_bytes() == before
    with pytest.raises(SystemExit) as exc:
        export.main([str(run_dir / "best.pt"), str(run_dir / "best.pt"), "--overwrite"])
    assert exc.value.code == 2 and "would replace the input" in capsys.readouterr().err
    mine = tmp_path / "mine.pt"
    mine.write_bytes(b"a file of yours")
    export.main([str(run_dir / "best.pt"), str(mine), "--overwrite"])
    assert f"replacing 1 earlier file (--overwrite): {mine}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        export.main([str(tmp_path / "missing.pt"), str(tmp_path / "x.pt")])
    err = capsys.readouterr().err  # the positional argument, not a --checkpoint flag export does not have
    assert exc.value.code == 2 and err.startswith(f"error: checkpoint: checkpoint not found: {tmp_path}"), err
    folder = tmp_path / "weights"
    folder.mkdir()
    for extra, flag in (([str(folder), "--overwrite"], "output"),
                        ([str(tmp_path / "y.pt"), "--onnx", str(folder), "--overwrite"], "--onnx")):
        with pytest.raises(SystemExit) as exc:
            export.main([str(run_dir / "best.pt"), *extra])
        captured = capsys.readouterr()  # refused up front: nothing named as replaced, nothing written
        assert exc.value.code == 2 and captured.err.startswith(f"error: {flag}: {folder} is a directory"), captured
        assert "replacing" not in captured.out and os.listdir(folder) == [] and not (tmp_path / "y.pt").exists()
    with pytest.raises(SystemExit) as exc:
        train_supervised.main(["--config", "config.tiny", "--device", "cpu", "--save_root", str(tmp_path),
                               "--modelName", "again", "--resume", str(path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "weights-only file" in err and "--pretrained" in err
