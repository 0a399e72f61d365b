"""Small filesystem helpers with one-line errors."""

from __future__ import annotations

import os
import tempfile

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
