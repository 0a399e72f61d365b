"""Who may write into a run directory, decided before any work, acted on only after every check has passed.

A fresh run takes an empty folder, or the folder of an earlier start of a run that stopped before its first
checkpoint (only the files a run writes at its start are there: nothing to resume, nothing of the user's).
A folder holding anything else is refused unless ``--overwrite``, which moves it aside to
``<run>.old-<time>/`` (nothing is deleted). A resumed run continues in its own folder: one whose checkpoint
is of the same run (the ``run_id`` every checkpoint of a run carries), never one holding another run's files
or the user's. The lock file, the temp files of a killed write and rank 0's write test are not a run's files.
"""

from __future__ import annotations

import datetime
import json
import os

from tqdm import tqdm

from checkpoint import LOADED_FROM, load_checkpoint
from config.default_config import CHOICES
from storage.io import ensure_writable_dir, some_names
from training.runlock import LOCK_NAME, RunLock
from utils.errors import UserInputError

INTERNAL_PREFIXES = (LOCK_NAME, ".tmp-", ".write-test-")  # the lock, a killed write's temp file, the write test
START_FILES = frozenset({"config.json", "log.jsonl", "tensorboard"})  # written before the first checkpoint

NEW, RESTART, MOVE, CONTINUE = "new", "restart", "move", "continue"  # what ``check_run_dir`` allows


def run_dir_files(run_dir: str) -> list[str]:
    """The names in ``run_dir`` that belong to a run or a user (sorted; none when it does not exist)."""
    if not os.path.isdir(run_dir):
        return []
    return sorted(n for n in os.listdir(run_dir) if not n.startswith(INTERNAL_PREFIXES))


def check_run_dir(run_dir: str, ckpt: dict | None, overwrite: bool) -> str:
    """What a run may do with ``run_dir``: ``NEW`` (nothing there), ``RESTART`` (an earlier start without a
    checkpoint), ``MOVE`` (``--overwrite``: move the files aside first) or ``CONTINUE`` (resume ``ckpt`` in
    its own folder). Anything else is refused with one line; nothing is changed."""
    names = run_dir_files(run_dir)
    if not names:
        return NEW
    if ckpt is not None:
        _check_own_folder(run_dir, names, ckpt)
        return CONTINUE
    if overwrite:
        return MOVE
    if unfinished_start(run_dir):
        return RESTART
    if any(n.endswith(".pt") for n in names):
        raise UserInputError(f"run directory {run_dir} already holds a run: use --resume {run_dir} to continue "
                             f"it, --overwrite to start again (the old files are moved aside), or another "
                             f"--model_name")
    raise UserInputError(f"run directory {run_dir} holds files that are not a run's ({some_names(names)}): use "
                         f"another --model_name, or --overwrite to move them aside to {run_dir}.old-<time>/")


def unfinished_start(run_dir: str) -> bool:
    """Only the files a run writes before its first checkpoint, its config.json among them: a start that was
    stopped (Ctrl-C, a killed process, an image that cannot be decoded) and left nothing to resume."""
    names = run_dir_files(run_dir)
    return set(names) <= START_FILES and "config.json" in names and _start_files_are_a_runs(run_dir)


def run_config_file(path: str) -> bool:
    """Whether ``path`` is a config.json a run wrote (a JSON object naming one of the trainers' methods)."""
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(config, dict) and config.get("method") in CHOICES["method"]


def _start_files_are_a_runs(run_dir: str) -> bool:
    """Whether the config.json and log.jsonl that a resumed run writes over (if there) are a run's: a run's
    config, and a log of JSON records (a record cut short by a crash still starts like one; --resume drops it)."""
    config, log = os.path.join(run_dir, "config.json"), os.path.join(run_dir, "log.jsonl")
    if os.path.lexists(config) and not run_config_file(config):
        return False
    if not os.path.lexists(log):
        return True
    try:
        with open(log) as f:
            return all(line.lstrip().startswith("{") for line in f if line.strip())
    except (OSError, UnicodeDecodeError):
        return False


def _check_own_folder(run_dir: str, names: list[str], ckpt: dict) -> None:
    """Refuse to resume ``ckpt`` into a folder that holds files of another run, or files of the user's."""
    source = ckpt[LOADED_FROM]
    if not _start_files_are_a_runs(run_dir):  # whatever the checkpoints say, these are not a run's files
        _refuse_foreign(source, run_dir, names)
    if names == [os.path.basename(source)] and os.path.samefile(os.path.dirname(os.path.abspath(source)), run_dir):
        return  # the checkpoint alone in its folder: nothing there to write over
    if os.path.isfile(os.path.join(run_dir, "last.pt")) and \
            os.path.samefile(source, os.path.join(run_dir, "last.pt")):
        return  # the usual --resume RUN: no second load of a large file to learn what is known
    try:
        own = load_checkpoint(run_dir, check_weights=False)
    except UserInputError:
        own = None
    if own is not None and os.path.samefile(own[LOADED_FROM], source):
        return
    if own is not None and own.get("run_id") is not None and own.get("run_id") == ckpt.get("run_id"):
        return  # another checkpoint of the same run (its best.pt, a snapshot)
    _refuse_foreign(source, run_dir, names)


def _refuse_foreign(source: str, run_dir: str, names: list[str]) -> None:
    raise UserInputError(f"--resume {source}: run directory {run_dir} holds files of another run or of yours "
                         f"({some_names(names)}); continuing there would write over them: pass --model_name NAME "
                         f"to continue this checkpoint in <save_root>/NAME")


def aside_path(run_dir: str) -> str:
    """``<run_dir>.old-<time>``, with ``-2``, ``-3`` ... when one of that second exists already."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{run_dir.rstrip(os.sep)}.old-{stamp}"
    aside, n = base, 1
    while os.path.lexists(aside):
        n += 1
        aside = f"{base}-{n}"
    return aside


def prepare_run_dir(run_dir: str, layout: str, lock: RunLock | None = None) -> None:
    """Act on ``check_run_dir``'s decision (on the main rank): move the old files aside for ``MOVE`` (``lock``
    then follows to the new folder), say so for ``RESTART``; then check that the folder is writable."""
    if layout == MOVE:
        aside = aside_path(run_dir)
        try:
            os.rename(run_dir, aside)
        except OSError as err:
            raise UserInputError(f"--overwrite: cannot move the old run aside, {run_dir} -> {aside} "
                                 f"({err.strerror})") from None
        if lock is not None:
            lock.follow(aside)
        tqdm.write(f"moved the old run aside: {aside}")
    elif layout == RESTART:
        tqdm.write(f"note: {run_dir} holds no checkpoint (an earlier start stopped before its first one): "
                   f"starting it again there")
    ensure_writable_dir(run_dir, "run directory (--save_root/--model_name)")
