"""The config: every key is read by the code, derived keys follow their source, one default per setting."""

from __future__ import annotations

import ast
import inspect
import os

import pytest
from conftest import REPO, error_line

import train_supervised
from cli.training import FLAG_TO_KEY, training_parser
from config import config_from_dict, load_config, parse_overrides
from config.default_config import CHOICES, CONFIG, DERIVED, RANGES, TYPES
from training.losses import heatmap_mse
from training.steps import ErrorLoss
from utils.errors import UserInputError

NOT_CODE = ("tests", "config", "results", "trainmodel", "outputs", "data")  # and hidden folders


def _holder(node: ast.expr) -> str:
    """The name an attribute or subscript is read from: ``cfg`` in ``cfg.lr``, ``cfg`` in ``run.cfg["lr"]``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return _holder(node.func) if isinstance(node, ast.Call) else ""


def _config_reads() -> set[str]:
    """Every ``<cfg or config>.key`` and ``<cfg or config>["key"]`` in the code outside config/ and tests/."""
    reads = set()
    for base, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".")
                   and os.path.relpath(os.path.join(base, d), REPO) not in NOT_CODE]
        for name in (f for f in files if f.endswith(".py")):
            with open(os.path.join(base, name)) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                key = node.attr if isinstance(node, ast.Attribute) else None
                if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                    key = node.slice.value
                if key is not None and any(w in _holder(node.value).lower() for w in ("cfg", "config")):
                    reads.add(key)
    return reads


def test_every_config_key_is_read_by_the_code():
    unread = sorted((set(CONFIG) | set(DERIVED)) - _config_reads())
    assert not unread, f"config keys no code reads: {unread}"
    assert set(CHOICES) | set(RANGES) <= set(CONFIG)  # no allowed values for a key that is gone
    assert set(FLAG_TO_KEY.values()) <= set(CONFIG)


def test_output_res_is_derived_from_input_res_and_saved_with_the_config():
    cfg = load_config("tiny", {"input_res": 128})
    assert cfg.output_res == 32 and cfg.to_dict()["output_res"] == 32  # config.json describes the run
    assert cfg.with_overrides({"input_res": 64}).output_res == 16
    assert config_from_dict(cfg.to_dict()) == cfg
    with pytest.raises(UserInputError, match="output_res cannot be set: it is input_res / 4"):
        parse_overrides(["output_res=32"])


def test_loss_is_no_key_and_the_seed_flag_only_says_so(capsys):
    saved = {**load_config("tiny").to_dict(), "loss": "mse"}  # a checkpoint's config that still holds the key
    assert "loss" not in config_from_dict(saved)
    with pytest.raises(UserInputError, match="unknown config key 'loss'"):
        parse_overrides(["loss=mse"])
    args = training_parser("", "supervised").parse_args(["--loss", "mse"])
    assert "loss" not in vars(args)
    assert capsys.readouterr().err.startswith("note: --loss is deprecated and ignored")


def test_the_error_loss_scale_has_one_default_the_configs():
    for fn in (heatmap_mse, ErrorLoss):
        params = inspect.signature(fn).parameters
        assert params["scale"].default is inspect.Parameter.empty, fn
        assert params["fg_weight"].default is inspect.Parameter.empty, fn
    assert CONFIG["mse_scale"] in CHOICES["mse_scale"]


def test_every_shipped_default_has_its_declared_type():
    assert set(TYPES) == set(CONFIG)
    assert all(isinstance(v, TYPES[k]) for k, v in CONFIG.items() if v is not None), \
        {k: v for k, v in CONFIG.items() if v is not None and not isinstance(v, TYPES[k])}


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("lr", -1.0, "lr=-1.0 is outside its range [1e-12, 10.0]"),
    ("sigma", "2", "sigma='2' should be a float"),
    ("optimizer", "rmsprop", "optimizer='rmsprop' is not one of RMSprop, Adam, SGD"),
    ("mean", (0.5, 0.5), "mean=(0.5, 0.5) must be 3 finite numbers (R, G, B)"),
    ("extra_key", 1, "extra_key not declared in TYPES, which gives the type of every key's value; declare it there"),
])
def test_a_hand_edited_default_is_checked_and_named_like_a_set(tmp_path, capsys, monkeypatch, key, value, expected):
    """The defaults file is user input too: one line naming it and the key, before any work (no run folder)."""
    monkeypatch.setitem(CONFIG, key, value)
    line = error_line(train_supervised, ["--config", "config.tiny", "--device", "cpu", "--save_root",
                                         str(tmp_path / "runs")], capsys)
    assert line == f"error: config/default_config.py: {expected}"
    assert os.listdir(tmp_path) == []
    with pytest.raises(UserInputError, match="config/default_config.py"):  # test.py, predict.py: a checkpoint's
        config_from_dict({})
