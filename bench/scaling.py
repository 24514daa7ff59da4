#!/usr/bin/env python
"""Trials per hour on this machine: 1 vs 2 trials at a time, a local Ray vs a 2-node (and a 1-node) local cluster.

Every configuration runs the same experiment, the space fixture in _common (dense [128, 64]-32, random, FIFO) with
--trials trials of --epochs epochs on a train subset, through instrumented.py, so the table shows both the whole
experiment's rate (start-up and shutdown included) and the steady rate (first trial start to last trial end).

  local1    1 node, 1 trial at a time: cpus 2 per trial (2 torch threads), the local Ray the driver starts
  local2    1 node, 2 trials at a time: cpus 1 per trial
  cluster2  launch/local_cluster.sh up --workers 1 --cpus-per-node 1 (head + 1 worker), cpus 1, --address auto
  cluster1  launch/local_cluster.sh up --workers 0 --cpus-per-node 2: an external cluster, not two nodes

  python bench/scaling.py                                            # all four, 3 repeats each
  python bench/scaling.py --configs local1 local2 --repeats 1 --trials 2 --epochs 1 --wait-idle 0   # smoke
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import _common

CLUSTER = _common.REPO / "launch" / "local_cluster.sh"
CONFIGS = {  # name: (label, cpus per trial, None: the driver's local Ray, or (worker nodes, cpus per node))
    "local1": ("1 node, 1 trial at a time (cpus 2/trial)", 2, None),
    "local2": ("1 node, 2 trials at a time (cpus 1/trial)", 1, None),
    "cluster2": ("2-node local cluster (1 CPU each), cpus 1/trial", 1, (1, 1)),
    "cluster1": ("1-node local cluster (2 CPUs), cpus 1/trial", 1, (0, 2)),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-size", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data-root", help="MNIST root (default: $AETUNE_DATA or /work/shared/data)")
    p.add_argument("--cluster-dir", default="/tmp/aeb-scaling", help="AETUNE_CLUSTER_DIR (<= 40 characters)")
    p.add_argument("--ray-port", type=int, default=6391, help="GCS port of the clusters (default 6391, clear of "
                   "other clusters on 6379)")
    p.add_argument("--wait-idle", type=float, default=300, metavar="S",
                   help="before each run, wait up to S seconds for idle CPUs; 0: do not wait")
    return p.parse_args(argv)


def cluster_env(args: argparse.Namespace) -> dict[str, str]:
    port = args.ray_port
    return _common.python_env({
        "AETUNE_CLUSTER_DIR": args.cluster_dir, "AETUNE_RAY_PORT": str(port),
        "AETUNE_DASHBOARD_PORT": str(port + 1900), "AETUNE_RAY_CLIENT_PORT": str(port + 3700),
        "AETUNE_AGENT_PORT": str(port + 46100), "AETUNE_PYTHON": sys.executable,
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    }, drop=("RAY_ADDRESS",))


def cluster(args: argparse.Namespace, *action: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER), *action], env=cluster_env(args), capture_output=True, text=True,
                          timeout=240)


def cluster_address_env(args: argparse.Namespace) -> dict[str, str]:
    """What `local_cluster.sh up` exported for its clients (RAY_ADDRESS and the auth token)."""
    lines = (Path(args.cluster_dir) / "env").read_text().splitlines()
    return dict(line[len("export "):].split("=", 1) for line in lines if line.startswith("export "))


def measure(args: argparse.Namespace, key: str, tmp: Path) -> dict | str:
    """The runs of one configuration, or why there are none."""
    label, cpus, topology = CONFIGS[key]
    space = _common.write_space(tmp, key, samples=args.trials, epochs=args.epochs,
                                resources={"cpus": cpus, "gpus": 0}, defaults={"train_size": args.train_size},
                                variants={"dense": {**_common.MODELS["dense"], "lr": {"loguniform": [5e-4, 5e-3]}}})
    env, extra = _common.python_env(drop=("RAY_ADDRESS",)), []
    if topology:
        cluster(args, "down")
        up = cluster(args, "up", "--workers", str(topology[0]), "--cpus-per-node", str(topology[1]))
        if up.returncode != 0:
            return f"cluster did not start: {up.stderr.strip()[-300:]}"
        env, extra = {**cluster_env(args), **cluster_address_env(args)}, ["--address", "auto"]
    runs = []
    try:
        for r in range(args.repeats):
            idle = _common.wait_for_idle(args.wait_idle)
            stamps = tmp / f"{key}_r{r}.jsonl"
            load = _common.load()
            run = _common.search(["--space", str(space), "--name", f"{key}_r{r}", "--storage", str(tmp / "runs"),
                                  "--data-root", _common.data_root(args.data_root), "--quiet", *extra],
                                 stamps=stamps, env=env)
            spans = _common.trial_spans(_common.stamps(stamps))
            nodes = {e.get("node") for e in _common.stamps(stamps) if e["event"] == "trial_start"}
            runs.append({"wall": run.wall, "steady": max(s[2] for s in spans) - spans[0][1], "trials": len(spans),
                         "first": spans[0][1] - run.launched, "trial": _common.median([e - s for _, s, e in spans]),
                         "nodes": len(nodes), "load": f"{load} ({idle})"})
            _common.progress(f"{key} repeat {r}: {run.wall:.1f} s")
    finally:
        if topology:
            cluster(args, "down")
    return {"label": label, "runs": runs}


def row(m: dict) -> list[object]:
    runs, n = m["runs"], m["runs"][0]["trials"]
    wall, steady = _common.median([r["wall"] for r in runs]), _common.median([r["steady"] for r in runs])
    return [m["label"], _common.spread([r["wall"] for r in runs]), f"{3600 * n / wall:.0f}",
            f"{3600 * n / steady:.0f}", f"{_common.median([r['first'] for r in runs]):.1f}",
            f"{_common.median([r['trial'] for r in runs]):.2f}", max(r["nodes"] for r in runs),
            "; ".join(r["load"] for r in runs)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _common.header()
    tmp = Path(tempfile.mkdtemp(prefix="aetune-bench-scaling-"))
    rows, notes = [], []
    for key in args.configs:
        result = measure(args, key, tmp)
        if isinstance(result, str):
            notes.append(f"- {key}: not measured: {result}")
        else:
            rows.append(row(result))
    print(f"{args.trials} trials x {args.epochs} epochs of dense [128, 64]-32, train_size {args.train_size}; "
          f"seconds, median (min-max) of {args.repeats}.\n")
    print(_common.table(["configuration", "experiment wall s", "trials/h (whole experiment)",
                         "trials/h (first trial start to last end)", "s to first trial start", "median trial wall s",
                         "nodes that ran trials", "load 1/5/15 before each run (CPU busy)"], rows))
    print("\n".join(["", *notes]) if notes else "", end="")
    _common.footer()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
