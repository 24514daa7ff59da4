"""User-facing errors and the CLI wrapper that turns them into one line and exit status 2."""
from __future__ import annotations

import functools
import sys
from typing import Callable


class UsageError(ValueError):
    """Bad input from the user (config, flags, data root, checkpoint): one line that says what and how to fix it."""


def cli(main: Callable[..., int | None]) -> Callable[..., int]:
    """Run a CLI entry point; a UsageError becomes `aetune: error: ...` on stderr and exit status 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except UsageError as err:
            print(f"aetune: error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("aetune: interrupted", file=sys.stderr)
            return 130

    return wrapper
