"""The search's console: one compact status view of the whole experiment, in place of Ray Tune's per-trial output.

On a terminal the view is redrawn in place every second: trials per variant and state, the running trials with
their epoch and their variant's own objective(s), the best so far per variant (its search trials', on the split
it selects on). Repeats of a pick (`repeats: K`) are counted apart from the search's budget. Anywhere else (CI, nohup, SLURM
logs) it is plain lines: the counts every while, and one line as each variant finishes. Trial errors are always
printed, with the path of their error file. Per-trial detail lives in the files, TensorBoard and optuna-dashboard.
"""
from __future__ import annotations

import logging
import math
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TextIO

from ray.tune import Callback
from ray.tune.experiment import Trial

from aetune.experiment import REPEAT_KEY, VARIANT_KEY
from aetune.numbers import is_finite
from aetune.pareto import front
from aetune.search.picks import selected_on
from aetune.search.spaces import SearchSpace

STATES = ("done", "stopped", "running", "waiting", "errored")  # the columns of the view, in order
SHOWN_RUNNING = 12  # running trials listed on a terminal; the rest are counted


class LiveStatus(Callback):
    """A Tune callback that draws the status view on stderr (the pick table that follows goes to stdout)."""

    def __init__(self, space: SearchSpace, name: str, view: bool = True, splits: dict[str, dict] | None = None):
        self.name, self.epochs, self.view = name, space.epochs, view  # view=False: the trials' errors only
        self.objectives = {v.name: (space.search(v).metric, space.search(v).mode) for v in space.runs()}
        self.budgets = {v.name: space.trial_count(v) for v in space.runs()}
        self.repeats = {v.name: space.search(v).repeats for v in space.runs()}  # K per variant
        self.selected_on = {v.name: selected_on(space.search(v), (splits or {}).get(v.name, {})) for v in space.runs()}
        self._reset()

    def _reset(self) -> None:
        self._start = self._last = time.monotonic()
        self._drawn = 0  # lines of the frame on screen (terminal) to draw over
        self._finished: set[str] = set()  # variants whose end was announced (plain lines)

    def __getstate__(self) -> dict:  # pickled with the Tuner: nothing of this driver's
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @property
    def live(self) -> bool:
        return self.stream.isatty()

    # --- Tune's hooks -------------------------------------------------------------------------------------------

    def on_step_end(self, iteration: int, trials: list[Trial], **info) -> None:
        if not self.view:
            return
        now = time.monotonic()
        if self.live:
            if now - self._last >= 1.0:
                self._draw(trials)
            return
        self._announce_finished(trials)
        elapsed = now - self._start
        if now - self._last >= min(300.0, max(30.0, elapsed / 10)):  # every 30 s, sparser on a long run
            self._line(self.headline(trials) + self.running_brief(trials))
            self._last = now

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._line(f"trial {trial} failed; retrying from its last checkpoint ({self.error_of(trial)})")

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._line(f"ERROR trial {trial} failed for good ({self.error_of(trial)})")

    def on_experiment_end(self, trials: list[Trial], **info) -> None:
        if not self.view:
            return
        if self.live:
            self._draw(trials)
        else:
            self._announce_finished(trials)
            self._line(self.headline(trials))

    # --- what is shown ------------------------------------------------------------------------------------------

    def counts(self, trials: list[Trial]) -> dict[str, Counter]:
        """Per variant, its search trials: done (all epochs), stopped early (ASHA), running, waiting (pending,
        paused or not yet asked for) and errored; and its repeats (`repeats` ended, `repeats_running`; a pending
        repeat is neither: it is still due)."""
        counts = {name: Counter() for name in self.budgets}
        for trial in trials:
            name = trial.config.get(VARIANT_KEY)
            if name not in counts:
                continue
            state = self.state(trial)
            if REPEAT_KEY in trial.config:
                if state != "waiting":
                    counts[name]["repeats_running" if state == "running" else "repeats"] += 1
            else:
                counts[name][state] += 1
        for name, count in counts.items():
            count["waiting"] += max(0, self.budgets[name] - sum(count[s] for s in STATES))
        return counts

    def repeats_due(self, name: str, count: Counter) -> int:
        """The variant's repeats to run: none once its search ended without a trial to pick."""
        searching = count["running"] or count["waiting"]
        return self.repeats[name] if searching or count["done"] or count["stopped"] else 0

    def state(self, trial: Trial) -> str:
        if trial.status == Trial.TERMINATED:
            return "done" if int(trial.last_result.get("epoch", 0)) >= self.epochs else "stopped"
        return {Trial.RUNNING: "running", Trial.ERROR: "errored"}.get(trial.status, "waiting")

    def best(self, name: str, trials: list[Trial]) -> str:
        """The variant's best objective so far (its search trials' latest results, not its repeats': those are the
        pick's config again); a front's size and its ends."""
        metrics, modes = self.objectives[name]
        points = [[r.get(m, math.nan) for m in metrics] for r in
                  (t.last_result for t in trials if t.config.get(VARIANT_KEY) == name and REPEAT_KEY not in t.config
                   and t.last_result)]
        points = [p for p in points if all(is_finite(x) for x in p)]
        if not points:
            return "-"
        if len(metrics) == 1:
            best = (min if modes[0] == "min" else max)(p[0] for p in points)
            return f"{metrics[0]} {best:.4g}"
        members = [points[i] for i in front(points, modes)]
        ends = ", ".join(f"{m} {span(min(p[i] for p in members), max(p[i] for p in members))}"
                         for i, m in enumerate(metrics))
        return f"front of {len(members)}: {ends}"

    def headline(self, trials: list[Trial]) -> str:
        total, due = Counter(), 0
        for name, count in self.counts(trials).items():
            total.update(count)
            due += self.repeats_due(name, count)
        finished = total["done"] + total["stopped"] + total["errored"]
        repeats = f", {total['repeats']}/{due} repeats finished" if any(self.repeats.values()) else ""
        return (f"[{self.name} {clock(time.monotonic() - self._start)}] {finished}/{sum(self.budgets.values())} "
                f"trials finished ({total['stopped']} stopped early, {total['errored']} errored){repeats}, "
                f"{total['running'] + total['repeats_running']} running")

    def running(self, trials: list[Trial]) -> list[tuple[Trial, str]]:
        """Each running trial with its epoch and its variant's objective(s) at that epoch; a repeat says which."""
        shown = []
        for trial in trials:
            if trial.status != Trial.RUNNING:
                continue
            result = trial.last_result or {}
            metrics = self.objectives.get(trial.config.get(VARIANT_KEY), ((), ()))[0]
            values = " ".join(f"{m} {result[m]:.4g}" for m in metrics if isinstance(result.get(m), (int, float)))
            epoch = f"epoch {result['epoch']}/{self.epochs}" if "epoch" in result else "starting"
            repeat = (f"repeat {trial.config[REPEAT_KEY]}, seed {trial.config.get('seed')}: "
                      if REPEAT_KEY in trial.config else "")
            shown.append((trial, f"{repeat}{epoch}  {values}".rstrip()))
        return shown

    def running_brief(self, trials: list[Trial]) -> str:
        running = self.running(trials)
        listed = "; ".join(f"{trial} {what}" for trial, what in running[:4])
        more = f"; +{len(running) - 4} more" if len(running) > 4 else ""
        return f": {listed}{more}" if running else ""

    def frame(self, trials: list[Trial]) -> list[str]:
        """The terminal view."""
        width = max(len("variant"), *map(len, self.budgets))
        splits = set(self.selected_on.values())
        best = f"best so far ({splits.pop()})" if len(splits) == 1 else "best so far"
        lines = [self.headline(trials),
                 f"{'variant':<{width}}  " + " ".join(f"{s:>7}" for s in (*STATES, "repeats")) + f"  {best}"]
        for name, count in self.counts(trials).items():
            repeats = f"{count['repeats']}/{self.repeats_due(name, count)}" if self.repeats[name] else "-"
            on = f" ({self.selected_on[name]})" if best == "best so far" else ""
            lines.append(f"{name:<{width}}  " + " ".join(f"{count[s]:>7}" for s in STATES) +
                         f" {repeats:>7}  {self.best(name, trials)}{on}")
        running = self.running(trials)
        if running:
            lines.append("running")
            lines += [f"  {str(trial):<{width + 9}}  {what}" for trial, what in running[:SHOWN_RUNNING]]
            if len(running) > SHOWN_RUNNING:
                lines.append(f"  ... and {len(running) - SHOWN_RUNNING} more")
        return lines

    @staticmethod
    def error_of(trial: Trial) -> str:
        """The error's last line (the exception, from this driver's copy of the error file) and where the file is
        kept with the trial."""
        local = Path(trial.error_file) if trial.error_file else None
        if local is None:
            return "no error file"
        lines = [line.strip() for line in local.read_text(errors="replace").splitlines() if line.strip()] \
            if local.is_file() else []
        where = f"error file: {trial.path}/{trial.run_metadata.error_filename}"
        return f"{lines[-1][:160]}; {where}" if lines else where

    # --- drawing ------------------------------------------------------------------------------------------------

    def _draw(self, trials: list[Trial]) -> None:
        columns = shutil.get_terminal_size().columns
        lines = [line[:columns - 1] for line in self.frame(trials)]  # a wrapped line would break the redraw
        up = f"\x1b[{self._drawn}F\x1b[J" if self._drawn else ""  # back to the frame's first line, clear below
        self.stream.write(up + "\n".join(lines) + "\n")
        self.stream.flush()
        self._drawn, self._last = len(lines), time.monotonic()

    def _line(self, text: str) -> None:
        """A line that stays: on a terminal above the frame, which is drawn again below it."""
        if self.live and self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0
        print(f"aetune: {text}" if not text.startswith("[") else text, file=self.stream, flush=True)

    def _announce_finished(self, trials: list[Trial]) -> None:
        for name, count in self.counts(trials).items():
            if (name in self._finished or count["running"] or count["waiting"] or count["repeats_running"]
                    or count["repeats"] < self.repeats_due(name, count)):
                continue
            self._finished.add(name)
            best = self.best(name, trials)
            repeats = f", {count['repeats']} repeats" if self.repeats[name] else ""
            self._line(f"[{self.name} {clock(time.monotonic() - self._start)}] {name} finished: "
                       f"{count['done']} done, {count['stopped']} stopped early, {count['errored']} errored{repeats}; "
                       + (best if best.startswith("front") else f"best {best}") + f" ({self.selected_on[name]})")


def clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{seconds:02d}s"


def span(low: float, high: float) -> str:
    return f"{low:.4g}" if low == high else f"{low:.4g}..{high:.4g}"


class WithoutRayResumeHint(logging.Filter):
    """Ray's "Resume experiment with: Tuner.restore(path=...)" after Ctrl-C is for Tuner users: aetune prints the
    command that resumes the experiment (tuner.run) right below it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore(" not in record.getMessage()


def hide_ray_resume_hint() -> None:
    ray_tune = logging.getLogger("ray.tune.tune")  # tune.run's own logger
    if not any(isinstance(f, WithoutRayResumeHint) for f in ray_tune.filters):
        ray_tune.addFilter(WithoutRayResumeHint())
