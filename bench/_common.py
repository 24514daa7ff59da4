"""Shared helpers for the bench/ scripts: machine description, load average, medians, markdown rows."""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `import aetune` from a checkout that is not pip-installed
    sys.path.insert(1, str(REPO))
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "67108864", "MALLOC_TRIM_THRESHOLD_": "268435456"}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load() -> str:
    """The 1/5/15-minute load averages, as `uptime` shows them."""
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def versions() -> str:
    import torch

    parts = [f"torch {torch.__version__}"]
    try:
        import ray

        parts.append(f"ray {ray.__version__}")
    except ImportError:
        pass
    try:
        import optuna

        parts.append(f"optuna {optuna.__version__}")
    except ImportError:
        pass
    return ", ".join(parts)


def machine() -> str:
    return f"{os.cpu_count()}-core CPU ({cpu_model()}), {versions()}, python {platform.python_version()}"


def header(title: str) -> None:
    print(f"<!-- {title} -->")
    print(f"<!-- machine: {machine()} -->")
    print(f"<!-- command: {' '.join([Path(sys.executable).name, *sys.argv])} -->")
    print(f"<!-- load at start: {load()} -->")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float]) -> str:
    """'min-max' of the runs, to show the noise beside a median."""
    return f"{min(values):.3g}-{max(values):.3g}" if values else "-"


def table(columns: list[str], rows: list[list[object]]) -> str:
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def python_env(extra: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def run(cmd: list[str], env: dict[str, str] | None = None, timeout: float | None = None,
        cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, cwd=cwd or str(REPO), timeout=timeout, capture_output=True, text=True)


def data_root(arg: str | None) -> str:
    return str(Path(arg or os.environ.get("AETUNE_DATA") or "/work/shared/data").resolve())


def cpu_busy(seconds: float = 2.0) -> float:
    """Fraction of all CPUs busy over `seconds` (from /proc/stat), whoever uses them."""
    import time

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except OSError:
        return 0.0
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def wait_for_idle(max_wait: float, max_busy: float = 0.25, quiet_for: int = 2) -> str:
    """Wait (up to max_wait s) until the CPUs are idle in `quiet_for` consecutive 2-s samples, so other users'
    jobs do not land in a measurement. Returns a note for the table: the busy fraction seen and the wait."""
    import time

    start, quiet, busy = time.monotonic(), 0, 0.0
    while True:
        busy = cpu_busy()
        quiet = quiet + 1 if busy <= max_busy else 0
        waited = time.monotonic() - start
        if quiet >= quiet_for or waited >= max_wait:
            note = f"busy {busy:.0%}" + (f", waited {waited:.0f} s" if waited > 5 else "")
            if quiet < quiet_for:
                note += " (gave up waiting)"
            return note
