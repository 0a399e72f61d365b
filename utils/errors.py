"""The one exception type for bad user input, and the wrapper that turns it into a one-line exit."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable


class UserInputError(Exception):
    """Bad input from the user (file, flag, checkpoint) or a fault to report as one line (exit code 2)."""

    exit_code = 2


class Interrupted(UserInputError):
    """Ctrl-C: one line naming the last checkpoint, exit code 130 as a shell reports SIGINT."""

    exit_code = 130


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
    """Decorate an entry point: ``UserInputError`` prints one line ``error: ...`` and exits with its code (2;
    130 for Ctrl-C); an ``OSError`` naming a file (a full disk, a read-only folder) does the same with the
    path and the system's message, and Ctrl-C outside training exits 130 with one line too."""

    @functools.wraps(main)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return main(*args, **kwargs)
        except UserInputError as err:
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
