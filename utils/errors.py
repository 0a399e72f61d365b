"""The one exception type for bad user input, and the wrapper that turns it into a one-line exit."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable


class UserInputError(Exception):
    """Bad input from the user (file, flag, checkpoint); its message is shown as a single line."""


def exit_on_user_error(main: Callable[..., object]) -> Callable[..., object]:
    """Decorate an entry point so that ``UserInputError`` prints ``error: ...`` and exits with 2."""

    @functools.wraps(main)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return main(*args, **kwargs)
        except UserInputError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapper
