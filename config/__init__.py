"""Resolve a configuration: defaults, then one preset, then checked ``key=value`` overrides.

The result is a frozen ``Config`` (read with ``cfg.key``) that is saved with every checkpoint, so a run can
always be rebuilt from its files. Every value, the defaults' own included, is checked against its type
(``default_config.TYPES``), ``default_config.CHOICES`` / ``RANGES`` and the relations between keys
(``check_relations``) before any work starts.
"""

from __future__ import annotations

import ast
import difflib
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from config import cpu_small, default_config, gpu_lspet, newell8, tiny
from utils.errors import UserInputError

DEFAULTS_FILE = "config/default_config.py"  # how the one-line errors name a bad default
PRESETS: dict[str, dict[str, Any]] = {
    "default_config": {},
    "cpu_small": cpu_small.OVERRIDES,
    "gpu_lspet": gpu_lspet.OVERRIDES,
    "newell8": newell8.OVERRIDES,
    "tiny": tiny.OVERRIDES,
}


class Config(Mapping):
    """Immutable settings mapping with attribute access; the derived keys (``default_config.DERIVED``) are
    computed from the others here, so they always agree with them."""

    def __init__(self, values: Mapping[str, Any]):
        values = dict(values)
        for key, (rule, _) in default_config.DERIVED.items():
            values[key] = rule(values)
        object.__setattr__(self, "_values", values)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("Config is frozen; use Config.with_overrides")

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Config({self._values!r})"

    def with_overrides(self, overrides: Mapping[str, Any], sources: Mapping[str, str] | None = None) -> Config:
        """A new Config with ``overrides`` applied and checked like any other source; ``sources`` names the
        flag each key came from, for the one-line errors."""
        values = dict(self._values)
        for key, value in overrides.items():
            where = (sources or {}).get(key, "override")
            _check_key(key, where)
            values[key] = _coerce(key, value, where)
        check_relations(values, "config")
        return Config(values)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly copy (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self._values.items()}


def preset_name(name: str) -> str:
    """Accept ``cpu_small`` or ``config.cpu_small``; reject unknown presets with the valid list."""
    short = name.removeprefix("config.")
    if short not in PRESETS:
        raise UserInputError(f"--config: unknown preset '{name}'; valid: {', '.join('config.' + p for p in PRESETS)}")
    return short


def _check_key(key: str, where: str) -> None:
    if key in default_config.DERIVED:
        raise UserInputError(f"{where}: {key} cannot be set: it is {default_config.DERIVED[key][1]}")
    if key not in default_config.CONFIG:
        close = difflib.get_close_matches(key, default_config.CONFIG, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserInputError(f"{where}: unknown config key '{key}'{hint}")


def _coerce(key: str, value: Any, where: str, text: bool = True) -> Any:
    """Convert ``value`` to the type declared for ``key`` (``default_config.TYPES``) or raise a one-line error.
    ``text``: a string may spell a number, bool or list (``--set``); not in the Python files of the defaults and
    presets, where ``"2"`` for a number is a slip to point out."""
    expected = default_config.TYPES[key]
    value = default_config.RENAMED_VALUES.get(key, {}).get(value, value) if isinstance(value, str) else value
    optional = key in default_config.NUMBER_OR_NONE
    if text and isinstance(value, str) and expected is not str:
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kind = "number or None" if optional else expected.__name__
            raise UserInputError(f"{where}: {key}={value!r} is not a valid {kind}") from None
    if optional:
        ok = value is None or (isinstance(value, int | float) and not isinstance(value, bool))
        if not ok:
            raise UserInputError(f"{where}: {key}={value!r} should be a number or None")
        value = None if value is None else float(value)
        _check_value(key, value, where)
        return value
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is tuple:
        ok = isinstance(value, list | tuple)
        value = tuple(value) if ok else value
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise UserInputError(f"{where}: {key}={value!r} should be a {expected.__name__}")
    _check_value(key, value, where)
    return value


def _check_value(key: str, value: Any, where: str) -> None:
    """One-line error when ``value`` is outside ``key``'s declared choices or range (or not finite)."""
    if value is None:  # only keys in NUMBER_OR_NONE get here with None: nothing to range-check
        return
    choices = default_config.CHOICES.get(key)
    if choices is not None and value not in choices:
        raise UserInputError(f"{where}: {key}={value!r} is not one of {', '.join(map(str, choices))}")
    if isinstance(value, float) and not math.isfinite(value):
        raise UserInputError(f"{where}: {key}={value!r} must be a finite number")
    low, high = default_config.RANGES.get(key, (None, None))
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise UserInputError(f"{where}: {key}={value!r} is outside its range {span}")


def check_relations(values: Mapping[str, Any], where: str) -> None:
    """Checks that involve several keys; one line naming them and what is expected."""
    if values["input_res"] % (4 * 2 ** values["depth"]):
        raise UserInputError(f"{where}: input_res={values['input_res']} must be a multiple of 4 * 2**depth = "
                             f"{4 * 2 ** values['depth']} (each hourglass level halves the heatmap)")
    if values["scale_min"] > values["scale_max"]:
        raise UserInputError(f"{where}: scale_min={values['scale_min']} exceeds scale_max={values['scale_max']}")
    for key in ("mean", "std"):
        if len(values[key]) != 3 or not all(isinstance(v, int | float) and math.isfinite(v) for v in values[key]):
            raise UserInputError(f"{where}: {key}={values[key]!r} must be 3 finite numbers (R, G, B)")
    if any(v <= 0 for v in values["std"]):
        raise UserInputError(f"{where}: std={values['std']!r} must be positive")
    if any(not isinstance(m, int) or m < 1 for m in values["lr_milestones"]):
        raise UserInputError(f"{where}: lr_milestones={values['lr_milestones']!r} must be positive epoch numbers")
    if any(not isinstance(m, int) or m < 1 for m in values["snapshot_epochs"]):
        raise UserInputError(f"{where}: snapshot_epochs={values['snapshot_epochs']!r} must be positive epoch numbers")


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """Turn ``["lr=1e-3", "flip=False"]`` into a checked, typed dict."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise UserInputError(f"--set: expected key=value, got '{pair}'")
        key = key.strip()
        _check_key(key, "--set")
        out[key] = _coerce(key, raw.strip(), "--set")
    return out


def checked_defaults() -> dict[str, Any]:
    """``default_config.CONFIG`` checked as a preset or a --set is: that file is edited by hand too, and a bad
    value there would otherwise surface as a traceback deep in a run, or as an error naming a flag nobody passed.
    One line naming the file, the key and what is expected."""
    missing = sorted(set(default_config.TYPES) - set(default_config.CONFIG))
    if missing:
        raise UserInputError(f"{DEFAULTS_FILE}: CONFIG lacks {', '.join(missing)}; every key needs a default")
    undeclared = sorted(set(default_config.CONFIG) - set(default_config.TYPES))
    if undeclared:
        raise UserInputError(f"{DEFAULTS_FILE}: {', '.join(undeclared)} not declared in TYPES, which gives the "
                             f"type of every key's value; declare it there")
    values = {key: _coerce(key, value, DEFAULTS_FILE, text=False) for key, value in default_config.CONFIG.items()}
    check_relations(values, DEFAULTS_FILE)
    return values


def load_config(preset: str = "default_config", overrides: Mapping[str, Any] | None = None,
                sources: Mapping[str, str] | None = None) -> Config:
    """Defaults, then the named preset, then ``overrides`` (already typed, e.g. from flags).

    ``sources`` names where each override came from (``--epochs``, ``--set``) for the one-line errors."""
    values = checked_defaults()
    for key, value in PRESETS[preset_name(preset)].items():
        values[key] = _coerce(key, value, f"preset {preset}", text=False)
    return Config(values).with_overrides(overrides or {}, sources)


def config_from_dict(values: Mapping[str, Any], where: str = "checkpoint config") -> Config:
    """Rebuild a Config saved in a checkpoint; keys added to the defaults since then get their defaults.
    ``where`` names the saved config in the one-line errors (the checkpoint file, where the caller knows it)."""
    merged = checked_defaults()
    for key, value in values.items():
        if key in merged:  # derived keys are computed again; keys since removed (e.g. loss) are dropped
            merged[key] = _coerce(key, value, where)
    check_relations(merged, where)
    return Config(merged)


def check_setting(key: str, value: Any, where: str) -> Any:
    """``value`` for config key ``key``, checked as a preset's value is (its type, ``CHOICES``, ``RANGES``) for
    a value saved elsewhere under that name (a checkpoint's ``model_args``); one line naming ``where``."""
    _check_key(key, where)
    return _coerce(key, value, where, text=False)
