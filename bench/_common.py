"""What the bench/ scripts share: the lines that say where a table came from (command, revision, machine, load),
markdown tables, the one search-space fixture, running `python -m aetune.search` (optionally instrumented, see
instrumented.py) and reading a finished experiment's trials. Imports neither torch nor Ray."""
from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
if str(REPO) not in sys.path:  # `import aetune` from a checkout that is not pip-installed
    sys.path.insert(1, str(REPO))

from aetune.experiment import VARIANT_KEY  # noqa: E402  (after the path above; no torch)

# The models the benchmarks time; config keys as in a search space.
MODELS = {
    "dense": {"model": "dense", "hidden_layers": [128, 64], "code_size": 32},
    "vae": {"model": "vae", "hidden_layers": [512], "code_size": 2},
    "conv": {"model": "conv", "filters": [16, 8, 8]},
    "denoising": {"model": "conv", "filters": [32, 32], "noise_factor": 0.5},
}
LABELS = {"dense": "dense [128, 64] code 32", "vae": "vae [512] code 2", "conv": "conv [16, 8, 8]",
          "denoising": "denoising conv [32, 32], noise 0.5"}


# --- where a table came from -----------------------------------------------------------------------------------

def load() -> str:
    """The 1/5/15-minute load averages."""
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    changed = git("status", "--porcelain").splitlines()
    state = f"dirty: {len(changed)} changed or untracked paths" if changed else "clean tree"
    return f"{git('rev-parse', '--short', 'HEAD') or 'unknown'} ({state})"


def machine() -> str:
    def field(path: str, key: str) -> str | None:
        try:
            return next((line.split(":", 1)[1].strip() for line in Path(path).read_text().splitlines()
                         if line.startswith(key)), None)
        except OSError:
            return None

    cpu = field("/proc/cpuinfo", "model name") or platform.machine()
    memory = field("/proc/meminfo", "MemTotal")
    memory = f", {int(memory.split()[0]) / 2**20:.0f} GiB" if memory else ""
    versions = ", ".join(f"{name} {_version(name)}" for name in ("torch", "ray", "optuna"))
    return f"{os.cpu_count()} cores ({cpu}){memory}, {versions}, python {platform.python_version()}"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def shown(path: Path | str) -> str:
    """A path as the repository's README would write it: relative to the checkout when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


def header() -> None:
    """The lines above a script's tables: paste them with the tables into BENCHMARKS.md."""
    print(f"- command: `{shlex.join(['python', shown(sys.argv[0]), *sys.argv[1:]])}`")
    print(f"- revision: {revision()}")
    print(f"- machine: {machine()}")
    print(f"- load (1/5/15 min) before: {load()}\n", flush=True)


def footer() -> None:
    print(f"\n- load (1/5/15 min) after: {load()}")


def progress(message: str) -> None:
    """What a run is doing, on stderr: not part of the pasted output."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def table(columns: list[str], rows: list[list[object]]) -> str:
    def fmt(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    return "\n".join(lines + ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows])


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float], digits: int = 3) -> str:
    """'median (min-max)': the noise beside the median."""
    return f"{median(values):.{digits}g} ({min(values):.{digits}g}-{max(values):.{digits}g})" if values else "-"


def met(value: float, limit: float, at_most: bool = True, unit: str = "") -> str:
    ok = value <= limit if at_most else value >= limit
    return f"{'<=' if at_most else '>='} {limit:g}{unit}: {'met' if ok else 'MISSED'}"


# --- a quiet machine ---------------------------------------------------------------------------------------------

def cpu_busy(seconds: float = 2.0) -> float:
    """Fraction of all CPUs busy over `seconds` (from /proc/stat), whoever uses them."""
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def wait_for_idle(max_wait: float, max_busy: float = 0.25) -> str:
    """Wait up to max_wait s until two 2-s samples in a row find the CPUs idle, so that other users' jobs stay out
    of a measurement; returns what was seen, for the table."""
    if max_wait <= 0:
        return "not waited"
    start, quiet = time.monotonic(), 0
    while True:
        busy = cpu_busy()
        quiet = quiet + 1 if busy <= max_busy else 0
        waited = time.monotonic() - start
        if quiet >= 2 or waited >= max_wait:
            return f"busy {busy:.0%}, waited {waited:.0f} s" + ("" if quiet >= 2 else " (gave up)")


# --- search spaces and searches ------------------------------------------------------------------------------------

def write_space(folder: Path, name: str, variants: dict | None = None, defaults: dict | None = None,
                **settings: object) -> Path:
    """The one search-space fixture: dense [128, 64] code 32, random search, FIFO, 1 trial of 1 epoch on 1 CPU,
    batch 256, lr 1e-3, unless the arguments say otherwise (top-level keys as keywords). Returns folder/name.yaml."""
    space = {"name": name, "dataset": "mnist", "metric": "val_bce", "epochs": 1, "samples": 1, "searcher": "random",
             "scheduler": "fifo", "resources": {"cpus": 1, "gpus": 0}, "seed": 0,
             "defaults": {"batch_size": 256, "lr": 0.001, **(defaults or {})},
             "variants": variants or {"dense": MODELS["dense"]}, **settings}
    path = Path(folder) / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def python_env(extra: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return {**env, **(extra or {})}


@dataclass
class Run:
    wall: float  # seconds from launch to exit
    launched: float  # time.time() at launch and at exit, to line up with instrumented.py's stamps
    exited: float
    returncode: int
    output: str


def run(cmd: list[str], env: dict[str, str] | None = None, check: bool = True) -> Run:
    launched, start = time.time(), time.perf_counter()
    proc = subprocess.run(cmd, env=env or python_env(), cwd=REPO, capture_output=True, text=True)
    out = Run(time.perf_counter() - start, launched, time.time(), proc.returncode, proc.stdout + proc.stderr)
    if check and proc.returncode != 0:
        sys.exit(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{out.output[-4000:]}")
    return out


def search(args: list[str], stamps: Path | None = None, env: dict[str, str] | None = None,
           check: bool = True) -> Run:
    """`python -m aetune.search ARGS` in a fresh process; with `stamps`, through instrumented.py, which appends
    the timestamps of its phases and trials to that file."""
    driver = [str(BENCH / "instrumented.py"), str(stamps)] if stamps else ["-m", "aetune.search"]
    return run([sys.executable, *driver, *args], env=env, check=check)


def data_root(arg: str | None) -> str:
    return str(Path(arg or os.environ.get("AETUNE_DATA") or REPO.parent / "shared" / "data").resolve())


# --- reading results -----------------------------------------------------------------------------------------------

def trials(experiment: Path) -> list[dict]:
    """Every trial of an experiment folder: {"variant", "id", "config", "results": one dict per epoch}."""
    out = []
    for path in sorted(Path(experiment).glob("*/result.json")):  # runs/<name>/<variant>-<trial id>/
        results = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if results:
            config = {k: v for k, v in results[0]["config"].items() if k != VARIANT_KEY}
            out.append({"variant": results[0]["config"][VARIANT_KEY], "id": results[0]["trial_id"],
                        "config": config, "results": results})
    return out


def train_images(config: dict) -> int:
    """Training images a trial of this config trains on: train_size (default all 60,000) less the validation
    images held out of them (val_size, default 10%)."""
    total = config.get("train_size") or 60000
    val = config.get("val_size")
    return total - (round(0.1 * total) if val is None else val)


def stamps(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def trial_spans(events: list[dict]) -> list[tuple[str, float, float]]:
    """(trial id, start, end) of every run of a trainable (a retried trial runs more than once), by start."""
    starts: dict[str, list[float]] = {}
    spans = []
    for e in sorted(events, key=lambda e: e["t"]):
        if e["event"] == "trial_start":
            starts.setdefault(e["trial"], []).append(e["t"])
        elif e["event"] == "trial_end" and starts.get(e["trial"]):
            spans.append((e["trial"], starts[e["trial"]].pop(0), e["t"]))
    return sorted(spans, key=lambda s: s[1])
