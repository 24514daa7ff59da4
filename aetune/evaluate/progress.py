"""What the evaluation is doing and how far, on stderr (stdout keeps the leaderboard); silent with --quiet."""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator

from aetune.evaluate.model_figures import Artifact


class Progress:
    def __init__(self, quiet: bool = False):
        self.quiet, self.start = quiet, time.monotonic()

    def say(self, text: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.start:6.1f}s] {text}", file=sys.stderr, flush=True)

    def drawing(self, artifacts: Iterable[Artifact]) -> Iterator[Artifact]:
        """Passes the figures through, one line per group (a variant's figures, or those across variants) as it
        is done: drawing is the slow part."""
        group, count = None, 0
        for artifact in artifacts:
            if artifact.group != group and count:
                self.say(f"drew {count} figure(s) of {group or 'all variants'}")
                count = 0
            group, count = artifact.group, count + 1
            yield artifact
        if count:
            self.say(f"drew {count} figure(s) of {group or 'all variants'}")

    def done(self, checkpoints: int, figures: int, report: str) -> None:
        self.say(f"done: {checkpoints} checkpoint(s) scored, {figures} figure(s) drawn in "
                 f"{time.monotonic() - self.start:.0f} s; report: {report}")


SILENT = Progress(quiet=True)
