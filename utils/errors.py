"""The errors that end an entry point with one line (bad input, Ctrl-C, a stop signal), and the wrapper that
turns them into that line and an exit code. A run that diverged has its own (``training.stats.DivergedError``).

The wrapper also turns the signals a scheduler or a closed terminal sends (``STOP_SIGNALS``) into an exception:
the ``finally`` blocks and context managers on the way out run, so a file being written is removed rather than
left half-written, and the run ends with one line and the exit code a shell gives that signal.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import signal
import sys
import threading
from collections.abc import Callable, Iterator


class OneLineExit(Exception):
    """An error that ends an entry point with one line ``error: <message>`` and ``exit_code``
    (``exit_on_user_error``), no traceback."""

    exit_code = 2


class UserInputError(OneLineExit):
    """Bad input from the user (file, flag, checkpoint) or from the machine (a full disk): exit code 2."""


class Interrupted(OneLineExit):
    """Ctrl-C: one line naming the last checkpoint, exit code 130 as a shell reports SIGINT."""

    exit_code = 130


# SIGTERM: a scheduler's stop (Slurm, PBS, Kubernetes) and ``kill``; SIGUSR1/SIGUSR2: the warnings Slurm
# (--signal), SGE (-notify) and LSF send ahead of a time limit or a kill; SIGHUP: the terminal was closed;
# SIGXCPU: a CPU-time limit was reached. Each would otherwise end the process at once, mid-write.
STOP_SIGNALS: tuple[int, ...] = tuple(getattr(signal, name) for name in
                                      ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGHUP", "SIGXCPU") if hasattr(signal, name))


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15, and so on."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Stopped(OneLineExit):
    """A stop signal arrived: one line, exit code 128 + the signal's number, as a shell reports a process
    that signal ended (143 for SIGTERM)."""

    def __init__(self, message: str, signum: int = signal.SIGTERM):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


def raise_stopped(signum: int, _frame: object = None) -> None:
    """Signal handler: leave whatever runs now through an exception, cleaning up on the way."""
    raise Stopped(f"stopped by {signal_name(signum)}", signum)


@contextlib.contextmanager
def signal_handlers(handler: Callable[[int, object], None], signals: tuple[int, ...] = STOP_SIGNALS
                    ) -> Iterator[None]:
    """Install ``handler`` for ``signals`` for the duration of the block, then restore the previous ones.

    A signal the parent set to be ignored stays ignored (``nohup`` ignores SIGHUP so that a closed terminal
    does not end the run). Outside the main thread, where Python cannot install handlers, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in signals}
    for s, old in previous.items():
        if old is not signal.SIG_IGN:
            signal.signal(s, handler)
    try:
        yield
    finally:
        for s, old in previous.items():
            if old is not signal.SIG_IGN:
                signal.signal(s, old if old is not None else signal.SIG_DFL)


def refuse_empty(args: argparse.Namespace, positional: tuple[str, ...] = ()) -> argparse.Namespace:
    """Refuse a flag (or one of the ``positional`` arguments) given as an empty string, the value of an unset
    shell variable (``--modelName $NAME``): taken as "not given" it would silently fall back to a default;
    returns ``args``."""
    for name, value in vars(args).items():
        if isinstance(value, str) and not value.strip():
            shown = name if name in positional else f"--{name}"
            raise UserInputError(f"{shown}: empty value (an unset shell variable?); give a value or leave "
                                 f"the flag out")
    return args


def one_line(err: BaseException) -> str:
    """The user-facing line of ``err``.

    An error raised inside a DataLoader worker comes back re-raised as the same type, with a message of
    "Caught X in DataLoader worker process N.\nOriginal Traceback ...\nmodule.X: <original message>":
    keep only the original message.
    """
    text = str(err).strip()
    if "\n" not in text:
        return text
    lines = [line for line in text.splitlines() if line.strip()]
    if lines[0].startswith("Caught ") and "Original Traceback" in text:
        name = type(err).__name__
        for line in reversed(lines):
            head, sep, rest = line.partition(": ")
            if sep and not line.startswith(" ") and head.rsplit(".", 1)[-1] == name:
                return rest.strip()
        return lines[-1].strip()
    return " ".join(line.strip() for line in lines)


def exit_on_user_error(main: Callable[..., object]) -> Callable[..., object]:
    """Decorate an entry point: a ``OneLineExit`` prints one line ``error: ...`` and exits with its code (2;
    130 for Ctrl-C); an ``OSError`` naming a file (a full disk, a read-only folder) does the same with the
    path and the system's message, and Ctrl-C outside training exits 130 with one line too. A stop signal
    (``STOP_SIGNALS``) raises ``Stopped`` wherever the entry point is: one line, exit code 128 + its number."""

    @functools.wraps(main)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            with signal_handlers(raise_stopped):
                return main(*args, **kwargs)
        except OneLineExit as err:
            sys.stderr.write(f"error: {one_line(err)}\n")  # one write: ranks sharing a terminal do not interleave
            sys.exit(err.exit_code)
        except OSError as err:
            if err.filename is None:
                raise
            print(f"error: {err.filename}: {err.strerror or err}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
