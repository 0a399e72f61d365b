"""Small filesystem helpers with one-line errors: folder checks, strict JSON, and writes that leave nothing partial.

Every writer of the project goes through ``atomic_write`` (or ``append_bytes`` for the run log): a failed write
(a full disk, a quota, a file-size limit) ends in one line naming the path and the system's message, and the
file a user had before is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Iterator
from typing import Any

import cv2
import h5py
import numpy as np

from utils.errors import UserInputError

NOT_FOUND = "not found"


def file_problem(path: str) -> str | None:
    """Why ``path`` cannot be read as a regular file (``NOT_FOUND``, a broken symlink, a symlink loop, a
    directory, a FIFO or device, no read permission), or None when it can. Never opens the file: opening a
    FIFO would wait for a writer."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a symlink to a missing file" if os.path.islink(path) else NOT_FOUND
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a symlink loop"
        return err.strerror or str(err)
    if stat.S_ISDIR(mode):
        return "a directory"
    if not stat.S_ISREG(mode):
        return "not a regular file (a FIFO, socket or device)"
    if not os.access(path, os.R_OK):
        return "not readable (permission denied)"
    return None


def existing_parent_dir(path: str, flag: str) -> str:
    """Return ``path`` after checking that the folder it would be written in exists."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserInputError(f"{flag}: directory not found: {folder}")
    return path


def some_names(paths: list[str], shown: int = 4) -> str:
    """The first ``shown`` of ``paths`` and how many more: "a.json, a.png and 3 more"."""
    more = len(paths) - shown
    return ", ".join(paths[:shown]) + (f" and {more} more" if more > 0 else "")


def check_replaceable(outputs: list[str], inputs: list[str], flag: str, overwrite: bool) -> list[str]:
    """Check, before anything is written, the files a tool is about to write: an output that is one of its
    ``inputs`` is refused even with ``overwrite`` (the input would be gone before it is read again), an
    existing one needs ``overwrite``. Returns the existing outputs, for the caller to name before replacing
    them. ``flag`` names the output flag in the one-line errors."""
    existing = [p for p in outputs if os.path.lexists(p)]
    for out in existing:
        same = next((i for i in inputs if os.path.exists(i) and os.path.exists(out) and os.path.samefile(i, out)),
                    None)
        if same is not None:
            raise UserInputError(f"{flag}: writing {out} would replace the input {same}; choose another {flag}")
    if existing and not overwrite:
        raise UserInputError(f"{flag}: {len(existing)} file{'s' if len(existing) > 1 else ''} would be replaced "
                             f"({some_names(existing)}); pass --overwrite to replace them, or choose another "
                             f"{flag}")
    return existing


def replacing_note(replaced: list[str]) -> str:
    """The line a tool prints, under ``--overwrite``, before it replaces ``replaced`` (``check_replaceable``'s
    answer)."""
    return (f"replacing {len(replaced)} earlier file{'s' if len(replaced) > 1 else ''} (--overwrite): "
            f"{some_names(replaced, shown=10)}")


def ensure_writable_dir(path: str, flag: str) -> str:
    """Create ``path`` if needed and check that files can be written in it."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as err:
        raise UserInputError(f"{flag}: cannot write to directory {path} ({err.strerror})") from None
    return path


def file_sha256(path: str) -> str:
    """The sha256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def os_error_text(err: BaseException) -> str:
    """The system's message of a failed write: ``strerror``, else the ``errno = N`` that h5py and other C
    libraries put inside their own message, else the first line of the message."""
    found = re.search(r"errno = (\d+)", str(err))
    if found:
        return os.strerror(int(found.group(1)))
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def write_error(path: str, err: BaseException) -> UserInputError:
    """The one-line error of a failed write to ``path``."""
    return UserInputError(f"cannot write {path}: {os_error_text(err)}")


class WriteThrough:
    """A write-only binary file object over a descriptor: each ``write`` goes straight to ``os.write``.

    Without a buffer the failure of a write surfaces at that write, and the ``OSError`` is kept in ``error``:
    libraries that wrap it into their own exception (``torch.save`` reports "unexpected pos") lose its errno.
    """

    def __init__(self, fd: int):
        self.fd = fd
        self.error: OSError | None = None

    def write(self, data) -> int:
        """Write all of ``data`` (bytes-like); returns its length in bytes."""
        view = memoryview(data).cast("B")
        size = view.nbytes
        try:
            while view.nbytes:
                view = view[os.write(self.fd, view):]
        except OSError as err:
            self.error = err
            raise
        return size

    def flush(self) -> None:
        """Nothing is buffered."""


def _create_temp(folder: str, suffix: str, path: str) -> tuple[int, str]:
    """A new ``.tmp-<random><suffix>`` file in ``folder``, opened for writing, with the permissions the umask
    gives a new file (``tempfile.mkstemp`` would make it private to the owner)."""
    while True:
        tmp = os.path.join(folder, f".tmp-{secrets.token_hex(6)}{suffix}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
        except OSError as err:
            raise write_error(path, err) from None


@contextlib.contextmanager
def atomic_write(path: str, durable: bool = False) -> Iterator[WriteThrough]:
    """Yield a file object on a temp file beside ``path`` (``.tmp-*`` with ``path``'s suffix); on success fsync
    it and rename it over ``path``, so readers and crashes see the old file or the new one, never a torn one.

    On any failure the temp file is removed; a failed write (an ``OSError``, also one that a library wrapped
    into its own exception) raises a one-line ``UserInputError`` naming ``path`` and the system's message.
    ``durable``: also fsync the folder, so the rename itself survives a power cut (checkpoints).
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = _create_temp(folder, os.path.splitext(path)[1], path)
    out = WriteThrough(fd)
    try:
        try:
            yield out
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        cause = out.error or (err if isinstance(err, OSError) else None)
        if cause is not None:
            raise write_error(path, cause) from None
        raise
    if durable:
        with contextlib.suppress(OSError):  # folders cannot be opened for fsync on every system
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def write_bytes(path: str, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically (see ``atomic_write``); returns ``path``."""
    with atomic_write(path) as f:
        f.write(data)
    return path


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yield a temp path beside ``path`` (same suffix, so writers that pick a format by extension work) for
    writers that need a file name (OpenCV, scipy, h5py); rename it over ``path`` when the block ends, or
    remove it if the block raises. A failed write becomes one line naming ``path`` (``write_error``)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = _create_temp(folder, os.path.splitext(path)[1], path)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        raise write_error(path, err) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def append_bytes(path: str, data: bytes) -> str:
    """Append ``data`` to ``path`` (created if needed), all or nothing: a failed write cuts the file back to
    its old length and raises one line naming ``path``; returns ``path``."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as err:
        raise write_error(path, err) from None
    try:
        start = os.fstat(fd).st_size
        try:
            WriteThrough(fd).write(data)
        except OSError as err:
            with contextlib.suppress(OSError):  # shrinking needs no space; a failure here leaves a partial line
                os.ftruncate(fd, start)
            raise write_error(path, err) from None
    finally:
        os.close(fd)
    return path


def write_image(path: str, image_bgr: np.ndarray) -> str:
    """Encode (H, W, 3) uint8 BGR in the format of ``path``'s extension and write it atomically; returns ``path``.

    ``cv2.imwrite`` only returns False on a failed write (and may leave a partial file): encoding in memory
    and writing the bytes here gives the one-line error with the system's message."""
    ext = os.path.splitext(path)[1].lower()
    try:
        ok, data = cv2.imencode(ext, image_bgr)
    except cv2.error:
        ok = False
    if not ok:
        raise UserInputError(f"cannot write {path}: OpenCV cannot encode a '{ext}' image (use .png or .jpg)")
    return write_bytes(path, data.tobytes())


def write_json(path: str, value: Any, indent: int = 2) -> str:
    """Write ``json_safe(value)`` to ``path`` as strict JSON, atomically; returns ``path``."""
    text = json.dumps(json_safe(value), indent=indent, allow_nan=False)
    return write_bytes(path, text.encode())


def open_h5(path: str, what: str, flag: str = "") -> h5py.File:
    """``path`` opened for reading; a missing or non-HDF5 file is one line naming ``flag`` and ``what`` it
    should be."""
    prefix = f"{flag}: " if flag else ""
    if not os.path.isfile(path):
        raise UserInputError(f"{prefix}file not found: {path} (expected {what})")
    try:
        return h5py.File(path, "r")
    except OSError:
        raise UserInputError(f"{prefix}cannot read {path} as HDF5") from None
