"""User-facing errors, the CLI wrapper that turns them into one line and exit status 2, and first_line."""
from __future__ import annotations

import functools
import logging
import os
import sys
from typing import Callable, NoReturn


class UsageError(ValueError):
    """Bad input from the user (config, flags, data root, checkpoint): one line that says what and how to fix it."""


def first_line(err: BaseException | str, last: bool = False, limit: int = 300) -> str:
    """The first (or last) non-empty line of an error's text, or its type name when it has none; at most `limit`
    characters. Error messages quoted inside our one-line errors go through here."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__ if isinstance(err, BaseException) else "(no message)"
    return (lines[-1] if last else lines[0])[:limit]


def quote(value: object, limit: int = 60) -> str:
    """A value as error messages quote it (its repr), cut to a readable length: a mistyped value may be huge."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 12]}... ({len(text):,} characters)"


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


def exit_now(status: int) -> NoReturn:
    """End a `python -m` process whose work is done (status 0 or 1), skipping the interpreter's teardown of
    PyTorch's, torchvision's and Ray's modules (a second or two that no output needs: files are written and synced,
    streams flushed here). No atexit handler runs: for entry points that leave no writer open. After an error or
    an interruption the process ends as usual, so that atexit handlers (Ray's shutdown among them) run."""
    if status not in (0, 1):
        sys.exit(status)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
