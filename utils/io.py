"""Small filesystem helpers with one-line errors."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from typing import Any

from utils.errors import UserInputError


def existing_parent_dir(path: str, flag: str) -> str:
    """Return ``path`` after checking that the folder it would be written in exists."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserInputError(f"{flag}: directory not found: {folder}")
    return path


def ensure_writable_dir(path: str, flag: str) -> str:
    """Create ``path`` if needed and check that files can be written in it."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as err:
        raise UserInputError(f"{flag}: cannot write to directory {path} ({err.strerror})") from None
    return path


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float (nested, NumPy scalars included) replaced by None.

    Python's json writes such floats as the bare words NaN/Infinity, which strict readers (jq, JavaScript,
    most other languages) reject; an undefined figure, such as the occluded score of a split without
    occlusion labels, is written as null instead.
    """
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # NumPy / torch scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that pick a format by extension work);
    rename it over ``path`` when the block ends, or remove it if the block raises.

    A reader never sees a half-written ``path``: either the old file or the complete new one. An
    ``OSError`` (a full disk, a read-only folder) becomes one line naming ``path`` and the system's message.
    """
    folder, name = os.path.split(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=os.path.splitext(name)[1])
        os.close(fd)
    except OSError as err:
        raise UserInputError(f"cannot write {path}: {err.strerror or err}") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file what open() would
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        raise UserInputError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str, value: Any, indent: int = 2) -> str:
    """Write ``json_safe(value)`` to ``path`` as strict JSON, atomically (``atomic_output``); returns ``path``."""
    text = json.dumps(json_safe(value), indent=indent, allow_nan=False)
    with atomic_output(path) as tmp, open(tmp, "w") as f:
        f.write(text)
    return path
