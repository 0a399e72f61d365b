"""The one exception type for bad user input, and the wrapper that turns it into a one-line exit."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable


class UserInputError(Exception):
    """Bad input from the user (file, flag, checkpoint); its message is shown as a single line."""


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
    """Decorate an entry point so that ``UserInputError`` prints one line ``error: ...`` and exits with 2."""

    @functools.wraps(main)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return main(*args, **kwargs)
        except UserInputError as err:
            print(f"error: {one_line(err)}", file=sys.stderr)
            sys.exit(2)

    return wrapper
