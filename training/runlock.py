"""One training per run directory: an exclusive lock on ``<run_dir>/.lock``, held while the run trains.

Two trainings in one folder would interleave their log lines and write over each other's checkpoints (one
run then names a ``best.pt`` that holds the other's weights). The operating system drops the lock when the
process ends in any way, a crash or SIGKILL included: a lock file left behind is never held, and the next
run takes it. The file says who holds it, for the message of a run that is refused. Under DDP only rank 0
takes it, and every rank learns whether it could.

It is a POSIX record lock (``fcntl.lockf``), not ``flock``: a ``flock`` belongs to the open file, which the
DataLoader workers forked by the trainer share, so a trainer killed with SIGKILL would leave its folder
locked until its orphaned workers noticed and exited. A record lock belongs to the process alone and is
not inherited by ``fork``. (Its one trap: closing any descriptor of the file in the holding process drops
it; nothing here opens the lock file while holding it.)
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import os
import socket
from collections.abc import Iterator

from runtime.distributed import DistInfo, first_error
from utils.errors import OneLineExit, UserInputError

LOCK_NAME = ".lock"


def _missing_dirs(path: str) -> list[str]:
    """``path`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    path = os.path.abspath(path)
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def _holder(path: str) -> str:
    """What the lock file says about the process holding it ("pid P on host H since T"), or ""."""
    try:
        with open(path) as f:
            return f.read(200).strip()
    except OSError:
        return ""


def _same_file(fd: int, path: str) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a releasing holder removes its lock file)."""
    try:
        mine, named = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (mine.st_dev, mine.st_ino) == (named.st_dev, named.st_ino)


def _locked_file(run_dir: str) -> int:
    """A descriptor of ``<run_dir>/.lock`` (folders and file made as needed), locked by this process; one line
    naming the holder when another process holds it."""
    where = "run directory (--save_root/--model_name)"
    path = os.path.join(run_dir, LOCK_NAME)
    while True:
        try:
            os.makedirs(run_dir, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise UserInputError(f"{where}: cannot write to directory {run_dir} ({err.strerror})") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EACCES, errno.EAGAIN):
                raise UserInputError(f"{where}: cannot lock {path} ({err.strerror})") from None
            holder = _holder(path)
            raise UserInputError(f"run directory {run_dir} is in use by another training"
                                 f"{f' ({holder})' if holder else ''}: two runs in one folder would write over "
                                 f"each other's checkpoints and log; wait for it to end, or use another "
                                 f"--model_name") from None
        if _same_file(fd, path):  # else the holder before us removed it between our open and our lock
            return fd
        os.close(fd)


class RunLock:
    """The lock of one run directory; ``release`` (or leaving the ``with`` block) unlocks it, removes the lock
    file, and removes the folders it created if they are still empty (a run refused before writing anything
    leaves no trace)."""

    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self.created = _missing_dirs(run_dir)
        self.fd: int | None = None
        self.path = ""
        self._take(run_dir)

    def _take(self, run_dir: str) -> None:
        try:
            self.fd, self.path = _locked_file(run_dir), os.path.join(run_dir, LOCK_NAME)
        except OneLineExit:  # a refusal, or a stop signal meanwhile: leave nothing behind
            self.release()
            raise
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()} on host {socket.gethostname()} since {stamp}\n".encode(), 0)

    def follow(self, aside: str) -> None:
        """The locked run directory was moved to ``aside`` (``--overwrite``), the lock file with it: lock a new,
        empty run directory before letting go of the old lock, so that no other run can slip in between."""
        old_fd = self.fd
        self.fd = None
        self.created = _missing_dirs(self.run_dir)
        try:
            self._take(self.run_dir)
        finally:
            if old_fd is not None:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(aside, LOCK_NAME))  # still ours: the moved run keeps no lock file
                os.close(old_fd)

    def release(self) -> None:
        """Unlock and remove the lock file; remove the folders this lock created if nothing was written there."""
        if self.fd is not None:
            if _same_file(self.fd, self.path):
                with contextlib.suppress(OSError):
                    os.unlink(self.path)  # while still locked: no other run holds this file
            os.close(self.fd)
            self.fd = None
        for folder in self.created:
            with contextlib.suppress(OSError):  # not empty: the run wrote something, or another did
                os.rmdir(folder)
        self.created = []

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def run_dir_lock(run_dir: str, dist: DistInfo) -> Iterator[RunLock | None]:
    """Hold the lock of ``run_dir`` for the block (rank 0; the other ranks get None): every rank stops with
    the same line when it cannot be taken."""
    lock, error = None, None
    if dist.is_main:
        try:
            lock = RunLock(run_dir)
        except OneLineExit as err:  # every rank stops with rank 0's line
            error = str(err)
    if dist.distributed:
        error = first_error(error)
    if error is not None:
        if lock is not None:
            lock.release()
        raise UserInputError(error)
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()
