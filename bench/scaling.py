#!/usr/bin/env python
"""Trials per hour on this machine: 1 vs 2 concurrent trials, and 1 node vs a 2-node local Ray cluster.

Every configuration runs the same experiment through `python -m aetune.search` (dense [128, 64] code 32,
searcher random, scheduler fifo, a train subset, a few epochs per trial, a temporary --storage); the real trainable
is wrapped to stamp each trial's start and end (see driver_overhead.py), so the table shows both the whole
experiment's rate (start-up and shutdown included) and the steady rate (first trial start to last trial end).

  1 node, 1 trial at a time   resources cpus 2 per trial (2 torch threads), a local Ray the driver starts
  1 node, 2 trials at a time  resources cpus 1 per trial (1 torch thread each)
  2 nodes (head + 1 worker, 1 CPU each: launch/local_cluster.sh up --workers 1 --cpus-per-node 1),
                              cpus 1 per trial, --address auto
  1-node cluster (launch/local_cluster.sh up --workers 0 --cpus-per-node 2), cpus 1 per trial, --address auto:
                              separates "an external cluster" from "two nodes"

  python bench/scaling.py                              # all four, 3 repeats each
  python bench/scaling.py --configs local1 local2 --repeats 1 --trials 4
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

CLUSTER_SCRIPT = _common.REPO / "launch" / "local_cluster.sh"
CONFIGS = {
    # name: (label, cpus per trial, cluster: None (local Ray) or (workers, cpus per node))
    "local1": ("1 node, 1 trial at a time (cpus 2/trial)", 2, None),
    "local2": ("1 node, 2 trials at a time (cpus 1/trial)", 1, None),
    "cluster2": ("2-node local cluster (1 CPU each), 2 at a time (cpus 1/trial)", 1, (1, 1)),
    "cluster1": ("1-node local cluster (2 CPUs), 2 at a time (cpus 1/trial)", 1, (0, 2)),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-size", type=int, default=20000)
    p.add_argument("--test-size", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data-root", default=None, help="MNIST root (default: $AETUNE_DATA or /work/shared/data)")
    p.add_argument("--cluster-dir", default="/tmp/aeb-scaling", help="AETUNE_CLUSTER_DIR for the local clusters "
                   "(at most 40 characters)")
    p.add_argument("--ray-port", type=int, default=6391, help="GCS port of the benchmark's clusters (default 6391, "
                   "to stay clear of other clusters on the default 6379)")
    p.add_argument("--wait-idle", type=float, default=300, metavar="S",
                   help="before each run, wait up to S seconds for the CPUs to be idle; 0: do not wait")
    return p.parse_args(argv)


def space_yaml(args: argparse.Namespace, cpus: float) -> str:
    return textwrap.dedent(f"""\
        name: scaling
        dataset: mnist
        metric: val_loss
        epochs: {args.epochs}
        samples: {args.trials}
        searcher: random
        scheduler: fifo
        resources: {{cpus: {cpus}, gpus: 0}}
        seed: 0
        defaults: {{train_size: {args.train_size}, test_size: {args.test_size}, batch_size: 256}}
        variants:
          dense:
            model: dense
            hidden_layers: [128, 64]
            code_size: 32
            lr: {{loguniform: [0.0005, 0.005]}}
        """)


def cluster_env(args: argparse.Namespace) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    return _common.python_env({
        "AETUNE_CLUSTER_DIR": args.cluster_dir, "AETUNE_RAY_PORT": str(args.ray_port),
        "AETUNE_DASHBOARD_PORT": str(args.ray_port + 1900), "AETUNE_RAY_CLIENT_PORT": str(args.ray_port + 3700),
        "AETUNE_AGENT_PORT": str(args.ray_port + 46100), "AETUNE_PYTHON": sys.executable,
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
    }, drop=("RAY_ADDRESS",))


def cluster(args: argparse.Namespace, action: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER_SCRIPT), *action], env=cluster_env(args), capture_output=True,
                          text=True, timeout=240)


def read_env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, value = line[len("export "):].split("=", 1)
            out[key] = value
    return out


def run_once(args: argparse.Namespace, storage: Path, space: Path, name: str, address_env: dict | None) -> dict:
    storage.mkdir(parents=True, exist_ok=True)
    stamps = storage / f"{name}.stamps.jsonl"
    cmd = [sys.executable, str(Path(__file__).with_name("driver_overhead.py")), "--driver", str(stamps),
           "--space", str(space), "--name", name, "--storage", str(storage),
           "--data-root", _common.data_root(args.data_root), "--quiet"]
    env = _common.python_env(drop=("RAY_ADDRESS",))
    if address_env:
        cmd += ["--address", "auto"]
        env = {**cluster_env(args), **address_env}
    idle = _common.wait_for_idle(args.wait_idle) if args.wait_idle else "-"
    load = _common.load()
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=str(_common.REPO), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    events = [json.loads(line) for line in stamps.read_text().splitlines()]
    starts = sorted(e["t"] for e in events if e["event"] == "trial_start")
    ends = sorted(e["t"] for e in events if e["event"] == "trial_end")
    t0 = next(e.get("t_override", e["t"]) for e in events if e["event"] == "process_start")
    nodes = len({e.get("node") for e in events if e["event"] == "trial_start"})
    return {"wall": wall, "steady": ends[-1] - starts[0], "first_start": starts[0] - t0, "trials": len(ends), "nodes": nodes,
            "trial_s": statistics.median(e - s for s, e in zip(starts, ends)), "load": load, "idle": idle}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _common.header(f"scaling: {args.trials} trials x {args.epochs} epochs, dense [128,64]-32, train_size "
                   f"{args.train_size}, test_size {args.test_size}")
    tmp = Path(tempfile.mkdtemp(prefix="aetune-bench-scaling-"))
    rows, notes = [], []
    for key in args.configs:
        label, cpus, topology = CONFIGS[key]
        space = tmp / f"{key}.yaml"
        space.write_text(space_yaml(args, cpus))
        address_env = None
        if topology:
            if not CLUSTER_SCRIPT.is_file():
                notes.append(f"{key}: not measured: {CLUSTER_SCRIPT} does not exist")
                rows.append([label, "not measured", "-", "-", "-", "-", "-", "-"])
                continue
            workers, node_cpus = topology
            cluster(args, ["down"])
            up = cluster(args, ["up", "--workers", str(workers), "--cpus-per-node", str(node_cpus)])
            if up.returncode != 0:
                notes.append(f"{key}: cluster did not start: {up.stderr.strip()[-500:]}")
                rows.append([label, "not measured (cluster did not start)", "-", "-", "-", "-", "-", "-"])
                continue
            address_env = read_env_file(Path(args.cluster_dir) / "env")
        runs = []
        try:
            for r in range(args.repeats):
                runs.append(run_once(args, tmp / "storage", space, f"{key}_r{r}", address_env))
                print(f"<!-- {key} repeat {r}: {runs[-1]} -->", file=sys.stderr, flush=True)
        except RuntimeError as err:
            notes.append(f"{key}: failed: {str(err)[-800:]}")
        finally:
            if topology:
                cluster(args, ["down"])
        if not runs:
            rows.append([label, "failed", "-", "-", "-", "-", "-", "-"])
            continue
        walls = [r["wall"] for r in runs]
        steadies = [r["steady"] for r in runs]
        n = runs[0]["trials"]
        rows.append([label, f"{statistics.median(walls):.1f} ({_common.spread(walls)})",
                     f"{3600 * n / statistics.median(walls):.0f}", f"{3600 * n / statistics.median(steadies):.0f}",
                     f"{statistics.median(r['first_start'] for r in runs):.1f}",
                     f"{statistics.median(r['trial_s'] for r in runs):.2f}", max(r["nodes"] for r in runs),
                     "; ".join(f"{r['load']} ({r['idle']})" for r in runs)])
    print(_common.table(["configuration", "experiment wall s (min-max)", "trials/h (whole experiment)",
                         "trials/h (steady: first start to last end)", "s to first trial start",
                         "median trial wall s", "nodes that ran trials", "load 1/5/15 before each run (CPU busy)"], rows))
    for note in notes:
        print(f"\n- {note}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
