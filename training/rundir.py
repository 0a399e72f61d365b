"""Who may write into a run directory, decided before any work, acted on only after every check has passed.

A fresh run takes an empty folder, or the folder of an earlier start of a run that stopped before its first
checkpoint (only the files a run writes at its start are there: nothing to resume, nothing of the user's).
A folder holding anything else is refused unless ``--overwrite``, which moves it aside to
``<run>.old-<time>/`` (nothing is deleted). A resumed run continues in its own folder: one whose checkpoint
is of the same run (the ``run_id`` every checkpoint of a run carries), never one holding another run's files
or the user's. An older checkpoint of the run (an ``epoch_<N>.pt``, a ``best.pt`` behind ``last.pt``) would roll
the run back, writing over its later checkpoints and cutting its log: refused unless ``--overwrite``, which
moves the run as it is aside first and brings back what the rolled-back run keeps (``ROLLBACK``). The lock
file, the temp files of a killed write and rank 0's write test are not a run's files.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil

from tqdm import tqdm

from checkpoint import LOADED_FROM, SNAPSHOT, load_checkpoint
from config.default_config import CHOICES
from storage.io import ensure_writable_dir, some_names
from training.runlock import LOCK_NAME, RunLock
from utils.errors import UserInputError

INTERNAL_PREFIXES = (LOCK_NAME, ".tmp-", ".write-test-")  # the lock, a killed write's temp file, the write test
START_FILES = frozenset({"config.json", "log.jsonl", "tensorboard"})  # written before the first checkpoint

NEW, RESTART, MOVE, CONTINUE, ROLLBACK = "new", "restart", "move", "continue", "rollback"  # ``check_run_dir``'s


def run_dir_files(run_dir: str) -> list[str]:
    """The names in ``run_dir`` that belong to a run or a user (sorted; none when it does not exist)."""
    if not os.path.isdir(run_dir):
        return []
    return sorted(n for n in os.listdir(run_dir) if not n.startswith(INTERNAL_PREFIXES))


def check_run_dir(run_dir: str, ckpt: dict | None, overwrite: bool) -> str:
    """What a run may do with ``run_dir``: ``NEW`` (nothing there), ``RESTART`` (an earlier start without a
    checkpoint), ``MOVE`` (``--overwrite``: move the files aside first), ``CONTINUE`` (resume ``ckpt`` in its
    own folder) or ``ROLLBACK`` (``--overwrite``: resume ``ckpt``, an older checkpoint of the run there, after
    moving the run aside). Anything else is refused with one line; nothing is changed."""
    names = run_dir_files(run_dir)
    if not names:
        return NEW
    if ckpt is not None:
        newer = _check_own_folder(run_dir, names, ckpt)
        if newer is None:
            return CONTINUE
        if overwrite:
            return ROLLBACK
        source = ckpt[LOADED_FROM]
        raise UserInputError(f"--resume {source}: run directory {run_dir} has trained further ({newer[LOADED_FROM]}"
                             f" is at {position_text(newer)}, this checkpoint at {position_text(ckpt)}); resuming "
                             f"from it would write over the later checkpoints and cut the log back: --resume "
                             f"{run_dir} continues from the newest, --overwrite goes back to this one after moving "
                             f"the run as it is to {run_dir}.old-<time>/")
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


def _check_own_folder(run_dir: str, names: list[str], ckpt: dict) -> dict | None:
    """Refuse to resume ``ckpt`` into a folder that holds files of another run, or files of the user's; return
    the run's newest checkpoint there when it is further on than ``ckpt`` (resuming would roll the run back),
    else None."""
    source = ckpt[LOADED_FROM]
    if not _start_files_are_a_runs(run_dir):  # whatever the checkpoints say, these are not a run's files
        _refuse_foreign(source, run_dir, names)
    if names == [os.path.basename(source)] and os.path.samefile(os.path.dirname(os.path.abspath(source)), run_dir):
        return None  # the checkpoint alone in its folder: nothing there to write over
    if os.path.isfile(os.path.join(run_dir, "last.pt")) and \
            os.path.samefile(source, os.path.join(run_dir, "last.pt")):
        return None  # the usual --resume RUN: no second load of a large file to learn what is known
    try:
        own = load_checkpoint(run_dir, check_weights=False)
    except UserInputError:
        own = None
    if own is not None and os.path.samefile(own[LOADED_FROM], source):
        return None
    if own is not None and own.get("run_id") is not None and own.get("run_id") == ckpt.get("run_id"):
        # another checkpoint of the same run (its best.pt, a snapshot): at the newest's position, or behind it
        return own if _iteration(own) > _iteration(ckpt) else None
    _refuse_foreign(source, run_dir, names)
    return None


def _iteration(ckpt: dict) -> int:
    return (ckpt.get("state") or {}).get("iteration", -1)


def position_text(ckpt: dict) -> str:
    """Where a training checkpoint is in its run: ``epoch 4 (iteration 8)``, ``epoch 4 step 1 (iteration 9)``."""
    state = ckpt.get("state") or {}
    step = f" step {state['epoch_step']}" if state.get("epoch_step") else ""
    return f"epoch {state.get('epoch')}{step} (iteration {state.get('iteration')})"


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


def moved_within(path: str, run_dir: str) -> str | None:
    """``path`` relative to ``run_dir`` when moving ``run_dir`` aside moves the file it names (it lies inside,
    by name or through symlinks), else None. Call before the move: afterwards the names resolve into the new,
    empty ``run_dir``."""
    for named, folder in ((os.path.abspath(path), os.path.abspath(run_dir)),
                          (os.path.realpath(path), os.path.realpath(run_dir))):
        if named.startswith(folder.rstrip(os.sep) + os.sep):
            return os.path.relpath(named, folder)
    return None


def prepare_run_dir(run_dir: str, layout: str, lock: RunLock | None = None, resumed: dict | None = None
                    ) -> str | None:
    """Act on ``check_run_dir``'s decision (on the main rank): move the old files aside for ``MOVE`` and
    ``ROLLBACK`` (``lock`` then follows to the new folder; a rollback of the run to ``resumed`` brings back what
    the run had at that checkpoint, ``bring_back``), say so for ``RESTART``; then check that the folder is
    writable. Returns where the old files went (None when nothing moved)."""
    aside = None
    if layout in (MOVE, ROLLBACK):
        aside = aside_path(run_dir)
        try:
            os.rename(run_dir, aside)
        except OSError as err:
            raise UserInputError(f"--overwrite: cannot move the old run aside, {run_dir} -> {aside} "
                                 f"({err.strerror})") from None
        if lock is not None:
            lock.follow(aside)
        tqdm.write(f"moved the old run aside: {aside}")
        if layout == ROLLBACK:
            os.makedirs(run_dir, exist_ok=True)
            kept = bring_back(aside, run_dir, resumed)
            tqdm.write(f"rolled back to {position_text(resumed)}: brought back {', '.join(kept) or 'nothing'} from "
                       f"{aside}; the later checkpoints and log records stay there")
    elif layout == RESTART:
        tqdm.write(f"note: {run_dir} holds no checkpoint (an earlier start stopped before its first one): "
                   f"starting it again there")
    ensure_writable_dir(run_dir, "run directory (--save_root/--model_name)")
    return aside


def bring_back(aside: str, run_dir: str, resumed: dict) -> list[str]:
    """Into the new ``run_dir``, from the run moved to ``aside``: what the run had when it wrote ``resumed``.
    Its config.json and log.jsonl (copies: the resumed run cuts the log back and appends to it), and its
    snapshots and best.pt at or before that position (hard links where the filesystem has them: checkpoints
    are only ever replaced by a rename, never written in place, so the two folders cannot change each other's).
    A best.pt from a later epoch stays aside; the resumed run writes its own when an epoch beats its best so far.
    Returns the names brought back."""
    epoch, kept = (resumed.get("state") or {}).get("epoch", -1), []
    for name in sorted(os.listdir(aside)):
        src, dst = os.path.join(aside, name), os.path.join(run_dir, name)
        snapshot = SNAPSHOT.fullmatch(name)
        if name in ("config.json", "log.jsonl"):
            _copy(src, dst, link=False)
        elif (snapshot and int(snapshot.group(1)) <= epoch) or \
                (name == "best.pt" and _not_later(src, resumed, run_dir)):
            _copy(src, dst, link=True)
        else:
            continue
        kept.append(name)
    return kept


def _not_later(path: str, resumed: dict, run_dir: str) -> bool:
    """Whether the checkpoint at ``path`` (moved aside from ``run_dir``) is ``resumed`` itself, or from a position
    at or before it."""
    source = resumed[LOADED_FROM]
    if os.path.basename(source) == os.path.basename(path) and \
            os.path.realpath(os.path.dirname(os.path.abspath(source))) == os.path.realpath(run_dir):
        return True  # the file resumed from, moved aside with the rest: no second load
    try:
        return _iteration(load_checkpoint(path, check_weights=False)) <= _iteration(resumed)
    except UserInputError:  # damaged: it stays aside with the rest
        return False


def _copy(src: str, dst: str, link: bool) -> None:
    try:
        if link:
            try:
                os.link(src, dst)
                return
            except OSError:  # a filesystem without hard links: a copy
                pass
        shutil.copy2(src, dst)
    except OSError as err:
        raise UserInputError(f"--overwrite: cannot bring {src} back into {dst} ({err.strerror}); the run as it "
                             f"was is whole in {os.path.dirname(src)}") from None
