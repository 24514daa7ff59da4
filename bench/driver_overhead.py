#!/usr/bin/env python
"""What the search driver costs on top of the training itself.

Runs `python -m aetune.search` on a temporary one-variant space (dense [128, 64] code 32, searcher random, scheduler
fifo, 1 epoch per trial, a small train subset, resources cpus=2 so trials run one after another) with 1 trial and with
N trials, and N bare epochs (the same model and data: a hand-written train loop + one evaluation pass, no Ray) back to
back in one process. Per-trial overhead = slope of the experiment wall time over trials, less one bare epoch;
per-experiment overhead = the intercept. A separately timed, instrumented run (the same aetune.search.main with the
real trainable wrapped to stamp its start and end, and ray.init/ray.shutdown timed) splits the wall time into
start-up, trials, gaps between trials and shutdown.

  python bench/driver_overhead.py                     # N=8, 3 repeats, train_size 6000
  python bench/driver_overhead.py --trials 4 --repeats 1 --train-size 2000
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

PROCESS_START = time.time()


def space_yaml(trials: int, train_size: int, test_size: int, cpus: float, variants: int = 1) -> str:
    names = ["dense"] + [f"dense{i}" for i in range(2, variants + 1)]  # identical variants: the cost of a variant
    body = "".join(f"  {name}: {{model: dense, hidden_layers: [128, 64], code_size: 32}}\n" for name in names)
    return textwrap.dedent(f"""\
        name: overhead
        dataset: mnist
        metric: val_loss
        epochs: 1
        samples: {trials}
        searcher: random
        scheduler: fifo
        resources: {{cpus: {cpus}, gpus: 0}}
        seed: 0
        defaults: {{train_size: {train_size}, test_size: {test_size}, batch_size: 256, lr: 0.001}}
        variants:
        """) + body


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=8, help="N: trials in the big experiment (default 8)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each experiment size (default 3)")
    p.add_argument("--train-size", type=int, default=6000)
    p.add_argument("--test-size", type=int, default=1000)
    p.add_argument("--cpus-per-trial", type=float, default=2.0)
    p.add_argument("--data-root", default=None, help="MNIST root (default: $AETUNE_DATA or /work/shared/data)")
    p.add_argument("--keep", action="store_true", help="keep the temporary storage folder")
    p.add_argument("--wait-idle", type=float, default=120, metavar="S",
                   help="before each timed run, wait up to S seconds for the CPUs to be idle; 0: do not wait")
    p.add_argument("--variants", type=int, default=3,
                   help="V: variants (1 trial each) in the per-variant measurement, against 1 (default 3; 0 skips)")
    p.add_argument("--no-extras", action="store_true",
                   help="skip the ray.init options and worker set-up hook experiments (proposed fixes)")
    p.add_argument("--driver", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)  # internal: instrumented driver
    return p.parse_args(argv)


# --- instrumented driver (a child process) -------------------------------------------------------------------------

def instrumented_driver(stamps: str, argv: list[str]) -> int:
    """aetune.search.main with the real trainable wrapped; appends JSON stamps to `stamps`."""
    t_imported_start = time.time()

    def stamp(event: str, **extra) -> None:
        with open(stamps, "a") as f:
            f.write(json.dumps({"event": event, "t": time.time(), "pid": os.getpid(), **extra}) + "\n")

    stamp("process_start", t_override=PROCESS_START)
    from aetune import search

    import ray

    real_init, real_shutdown = ray.init, ray.shutdown

    def warm_worker() -> None:  # proposed fix: import the trial's modules while the worker waits in Ray's pool
        import aetune.trainable  # noqa: F401  (torch, tensorboard, aetune.train)

    def timed_init(*a, **k):
        if os.environ.get("BENCH_WORKER_HOOK"):
            k["runtime_env"] = {**(k.get("runtime_env") or {}), "worker_process_setup_hook": warm_worker}
        if os.environ.get("BENCH_NO_DASHBOARD"):
            k["include_dashboard"] = False
        stamp("ray_init_start")
        out = real_init(*a, **k)
        stamp("ray_init_done")
        return out

    def timed_shutdown(*a, **k):
        stamp("ray_shutdown_start")
        real_shutdown(*a, **k)
        stamp("ray_shutdown_done")

    ray.init, ray.shutdown = timed_init, timed_shutdown
    from ray import tune

    real_fit = tune.Tuner.fit

    def timed_fit(self, *a, **k):
        stamp("tuner_fit_start")
        out = real_fit(self, *a, **k)
        stamp("tuner_fit_done")
        return out

    tune.Tuner.fit = timed_fit

    def stamped(config, **kwargs):
        t = time.time()
        import psutil  # a Ray dependency
        import ray

        node = ray.get_runtime_context().get_node_id()
        try:  # the environment the worker process was exec'd with: what glibc's malloc read at start-up
            with open("/proc/self/environ", "rb") as f:
                at_exec = [v.decode() for v in f.read().split(b"\0") if v.startswith(b"MALLOC_")]
        except OSError:
            at_exec = None
        with open(stamps, "a") as f:
            f.write(json.dumps({"event": "trial_start", "t": t, "pid": os.getpid(), "node": node,
                                "worker_created": psutil.Process().create_time(),
                                "malloc_env_at_exec": at_exec}) + "\n")
        from aetune.trainable import train_trial

        train_trial(config, **kwargs)
        with open(stamps, "a") as f:
            f.write(json.dumps({"event": "trial_end", "t": time.time(), "pid": os.getpid()}) + "\n")

    stamp("main_start", imports_s=time.time() - t_imported_start)
    rc = search.main(argv, trainable=stamped)
    stamp("main_done")
    return rc


# --- bare epochs ----------------------------------------------------------------------------------------------------

def bare_epochs(n: int, train_size: int, test_size: int, root: str, threads: int) -> list[float]:
    """n x (fresh model, one train epoch, one evaluation pass), back to back; seconds each."""
    import torch
    import torch.nn.functional as F

    from aetune.data import load_data
    from aetune.models import build_model

    torch.set_num_threads(threads)
    data = load_data("mnist", root, train_size, test_size, download=False)
    config = {"model": "dense", "hidden_layers": [128, 64], "code_size": 32, "batch_size": 256, "lr": 1e-3}
    times = []
    for trial in range(n + 1):  # the first is a warm-up
        start = time.perf_counter()
        torch.manual_seed(trial)
        model = build_model(config, data.shape)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        perm = torch.randperm(len(data.train_x))
        model.train()
        for i in range(0, len(perm), 256):
            x = data.train_x[perm[i:i + 256]].float().div_(255)
            loss = model.objective(x, x).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.inference_mode():
            x = data.test_x.float().div_(255)
            F.binary_cross_entropy_with_logits(model.objective(x, x).logits, x).item()
        if trial:
            times.append(time.perf_counter() - start)
    return times


# --- the measurement ------------------------------------------------------------------------------------------------

def run_experiment(storage: Path, space: Path, name: str, root: str, instrumented: Path | None = None,
                   wait_idle: float = 0, env: dict[str, str] | None = None) -> dict:
    if instrumented:
        cmd = [sys.executable, __file__, "--driver", str(instrumented)]
    else:
        cmd = [sys.executable, "-m", "aetune.search"]
    cmd += ["--space", str(space), "--name", name, "--storage", str(storage), "--data-root", root, "--quiet"]
    idle = _common.wait_for_idle(wait_idle) if wait_idle else "-"
    load = _common.load()
    start, t_launch = time.perf_counter(), time.time()
    proc = _common.run(cmd, env=_common.python_env(env))
    wall, t_exit = time.perf_counter() - start, time.time()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    iters = []
    for result in sorted((storage / name).glob("*/trial_*/result.json")):
        lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        iters += [r["time_this_iter_s"] for r in lines]
    return {"wall": wall, "load": f"{load} ({idle})", "time_this_iter_s": iters, "t_launch": t_launch,
            "t_exit": t_exit}


def breakdown(stamps: Path, t_launch: float, t_exit: float) -> list[tuple[str, float]]:
    """Phases of one instrumented run, in order; seconds."""
    events = [json.loads(line) for line in stamps.read_text().splitlines()]
    at = {}
    for e in events:  # the first occurrence of each driver event
        at.setdefault(e["event"], e.get("t_override", e["t"]))
    trials = [e for e in events if e["event"] == "trial_start"]
    starts = [e["t"] for e in trials]
    ends = [e["t"] for e in events if e["event"] == "trial_end"]
    walls = [e - s for s, e in zip(starts, ends)]
    gaps = [s - e for s, e in zip(starts[1:], ends)]
    worker = trials[0]["worker_created"]
    return [
        ("interpreter start-up (launch to first line of the script)", at["process_start"] - t_launch),
        ("imports: aetune.search (torch, via aetune.spaces) and ray", at["main_start"] - at["process_start"]),
        ("parse + validate the space, load MNIST once", at["ray_init_start"] - at["main_start"]),
        ("ray.init (local Ray: GCS, raylet, dashboard)", at["ray_init_done"] - at["ray_init_start"]),
        ("ray.init done to Tuner.fit (storage check, Tuner, searcher)", at["tuner_fit_start"] - at["ray_init_done"]),
        (f"Tuner.fit to first trial entry (its worker process was created {abs(worker - at['tuner_fit_start']):.2f} s "
         f"{'before' if worker < at['tuner_fit_start'] else 'after'} Tuner.fit)", starts[0] - at["tuner_fit_start"]),
        ("first trial (imports aetune/torch/tensorboard in the worker, loads MNIST)", walls[0]),
        (f"later trials, median of {len(walls) - 1}", statistics.median(walls[1:]) if len(walls) > 1 else math.nan),
        ("gap between trials, median", statistics.median(gaps) if gaps else math.nan),
        ("last trial end to Tuner.fit return", at["tuner_fit_done"] - ends[-1]),
        ("Tuner.fit return to ray.shutdown (summary.json)", at["ray_shutdown_start"] - at["tuner_fit_done"]),
        ("ray.shutdown", at["ray_shutdown_done"] - at["ray_shutdown_start"]),
        ("main() return to process exit", t_exit - at["main_done"]),
        ("total (launch to exit)", t_exit - t_launch),
    ]


def variant_section(args: argparse.Namespace, tmp: Path, root: str, loads: list[str]) -> None:
    """Each variant is its own Tuner: new trial actors, hence new worker processes that import torch again."""
    v = args.variants
    paths = {}
    for count in (1, v):
        paths[count] = tmp / f"variants{count}.yaml"
        paths[count].write_text(space_yaml(1, args.train_size, args.test_size, args.cpus_per_trial, variants=count))
    walls: dict[int, list[float]] = {1: [], v: []}
    for r in range(args.repeats):
        for count in (1, v):
            out = run_experiment(tmp / "storage", paths[count], f"v{count}_r{r}", root, wait_idle=args.wait_idle)
            walls[count].append(out["wall"])
            loads.append(out["load"])
    w1, wv = statistics.median(walls[1]), statistics.median(walls[v])
    print(_common.table(["experiment (1 trial of 1 epoch per variant)", "wall s, median (min-max)"], [
        ["1 variant", f"{w1:.2f} ({_common.spread(walls[1])})"],
        [f"{v} variants", f"{wv:.2f} ({_common.spread(walls[v])})"],
        ["**cost of each further variant** (slope)", f"**{(wv - w1) / (v - 1):.2f}**"],
    ]))


def extras_section(args: argparse.Namespace, tmp: Path, root: str, loads: list[str]) -> None:
    """Proposed fixes, tried from outside aetune: ray.init without the dashboard, and a worker set-up hook that
    imports the trial's modules in Ray's prestarted workers (instrumented driver, 3 identical variants x 1 trial)."""
    path = tmp / "extras.yaml"
    count = max(args.variants, 1)
    path.write_text(space_yaml(1, args.train_size, args.test_size, args.cpus_per_trial, variants=count))
    setups = {
        "as is": {},
        "ray.init(include_dashboard=False)": {"BENCH_NO_DASHBOARD": "1"},
        "runtime_env worker_process_setup_hook importing aetune.trainable": {"BENCH_WORKER_HOOK": "1"},
        "both": {"BENCH_NO_DASHBOARD": "1", "BENCH_WORKER_HOOK": "1"},
    }
    results: dict[str, list[dict]] = {k: [] for k in setups}
    for r in range(args.repeats):
        for label, env in setups.items():
            stamps = tmp / f"extras_{len(results[label])}_{abs(hash(label))}.jsonl"
            out = run_experiment(tmp / "storage", path, f"x{abs(hash(label))}_r{r}", root, instrumented=stamps,
                                 wait_idle=args.wait_idle, env=env)
            phases = dict(breakdown_variants(stamps, out["t_launch"], out["t_exit"]))
            results[label].append({"wall": out["wall"], **phases})
            loads.append(out["load"])
    keys = list(results["as is"][0])
    print(_common.table(["driver setup (instrumented, " + f"{count} variants x 1 trial)", *keys], [
        [label, *(f"{statistics.median(x[k] for x in runs):.2f}" for k in keys)] for label, runs in results.items()]))


def breakdown_variants(stamps: Path, t_launch: float, t_exit: float) -> list[tuple[str, float]]:
    events = [json.loads(line) for line in stamps.read_text().splitlines()]
    at = {}
    for e in events:
        at.setdefault(e["event"], e.get("t_override", e["t"]))
    starts = [e["t"] for e in events if e["event"] == "trial_start"]
    ends = [e["t"] for e in events if e["event"] == "trial_end"]
    walls = [e - s for s, e in zip(starts, ends)]
    return [("wall", t_exit - t_launch), ("ray.init s", at["ray_init_done"] - at["ray_init_start"]),
            ("Tuner.fit to 1st trial entry s", starts[0] - at["tuner_fit_start"]),
            ("trial wall s (each variant's first)", statistics.median(walls)),
            ("ray.shutdown s", at["ray_shutdown_done"] - at["ray_shutdown_start"])]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.driver is not None:
        return instrumented_driver(args.driver[0], args.driver[1:])
    root = _common.data_root(args.data_root)
    _common.header(f"driver_overhead: {args.trials} trials x 1 epoch, dense [128,64]-32, train_size "
                   f"{args.train_size}, test_size {args.test_size}, cpus/trial {args.cpus_per_trial}")
    tmp = Path(tempfile.mkdtemp(prefix="aetune-bench-overhead-"))
    spaces = {}
    for n in (1, args.trials):
        spaces[n] = tmp / f"space{n}.yaml"
        spaces[n].write_text(space_yaml(n, args.train_size, args.test_size, args.cpus_per_trial))

    help_times = []
    if args.wait_idle:
        _common.wait_for_idle(args.wait_idle)
    for _ in range(args.repeats):
        start = time.perf_counter()
        proc = _common.run([sys.executable, "-m", "aetune.search", "--help"], env=_common.python_env())
        help_times.append(time.perf_counter() - start)
        assert proc.returncode == 0, proc.stderr

    if args.wait_idle:
        _common.wait_for_idle(args.wait_idle)
    bare = bare_epochs(args.trials, args.train_size, args.test_size, root, threads=max(1, int(args.cpus_per_trial)))
    bare_epoch = statistics.median(bare)

    walls: dict[int, list[float]] = {1: [], args.trials: []}
    iters: list[float] = []
    loads = []
    for r in range(args.repeats):
        for n in (1, args.trials):  # interleaved, so load drifts hit both sizes alike
            out = run_experiment(tmp / "storage", spaces[n], f"n{n}_r{r}", root, wait_idle=args.wait_idle)
            walls[n].append(out["wall"])
            iters += out["time_this_iter_s"]
            loads.append(out["load"])
            print(f"<!-- n={n} repeat {r}: {out['wall']:.2f} s, load {out['load']} -->", file=sys.stderr, flush=True)

    stamps = tmp / "stamps.jsonl"
    out = run_experiment(tmp / "storage", spaces[args.trials], "instrumented", root, instrumented=stamps,
                         wait_idle=args.wait_idle)
    phases = breakdown(stamps, out["t_launch"], out["t_exit"])
    events = [json.loads(line) for line in stamps.read_text().splitlines()]

    n = args.trials
    w1, wn = statistics.median(walls[1]), statistics.median(walls[n])
    slope = (wn - w1) / (n - 1)
    per_trial = slope - bare_epoch
    per_experiment = w1 - slope  # intercept: the wall time of an experiment with zero trials
    rows = [
        ["`python -m aetune.search --help`", f"{statistics.median(help_times):.2f} s ({_common.spread(help_times)})", "-"],
        ["bare epoch (train + eval, no Ray)", f"{bare_epoch:.3f} s ({_common.spread(bare)})", "-"],
        ["experiment wall, 1 trial", f"{w1:.2f} s ({_common.spread(walls[1])})", "-"],
        [f"experiment wall, {n} trials", f"{wn:.2f} s ({_common.spread(walls[n])})", "-"],
        [f"{n} bare epochs back to back", f"{n * bare_epoch:.2f} s", "-"],
        ["Ray's time_this_iter_s per trial epoch", f"{statistics.median(iters):.3f} s", "-"],
        ["**overhead per trial** (slope - bare epoch)", f"**{per_trial:.2f} s**", "<= 1 s: " +
         ("met" if per_trial <= 1 else "MISSED")],
        ["**overhead per experiment** (intercept)", f"**{per_experiment:.2f} s**", "<= 10 s: " +
         ("met" if per_experiment <= 10 else "MISSED")],
        [f"overhead of the {n}-trial experiment over {n} bare epochs", f"{wn - n * bare_epoch:.2f} s "
         f"({(wn - n * bare_epoch) / n:.2f} s/trial)", "-"],
    ]
    print(_common.table(["quantity", "median (min-max)", "target"], rows))
    print()
    workers = len({e["pid"] for e in events if e["event"] == "trial_start"})
    print(f"Instrumented {n}-trial run ({out['wall']:.2f} s wall, load {out['load']}; trials in {workers} worker "
          "process(es)); the real trainable wrapped to stamp its start and end, ray.init/Tuner.fit/ray.shutdown timed:")
    print()
    print(_common.table(["phase", "seconds"], [[k, f"{v:.2f}"] for k, v in phases]))
    seen = {tuple(e.get("malloc_env_at_exec") or ()) for e in events if e["event"] == "trial_start"}
    print(f"\nMALLOC_* variables in the trial workers' environment at exec (/proc/self/environ): "
          f"{'; '.join(', '.join(s) or 'none' for s in sorted(seen))}")
    if args.variants > 1:
        print()
        variant_section(args, tmp, root, loads)
    if not args.no_extras:
        print()
        extras_section(args, tmp, root, loads)
    print(f"<!-- loads during the runs: {', '.join(loads)}; at end {_common.load()} -->")
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"<!-- kept {tmp} -->")
    return 0


if __name__ == "__main__":
    sys.exit(main())
