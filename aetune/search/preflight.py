"""The driver's checks of what the space and flags ask of the machine and the cluster, each one line before
anything is written: names the filesystem can hold, a cluster that answers, trials some node can ever run; and
SIGTERM taken like Ctrl-C (Tune saves its state and the driver says how to resume)."""
from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path

from aetune.errors import UsageError, first_line, quote
from aetune.search.spaces import RESOURCE_STEP, SearchSpace
from aetune.storage import is_uri

CONNECT_TIMEOUT_S = 10.0  # a Ray head that does not accept a connection in this long is not there
TRIAL_ID_CHARS = 17  # "-" and Ray's trial id (8 hex, or 5 hex + "_" + a 5-digit count, with room to spare)


def name_limit(storage: str) -> int:
    """The longest file name the storage's filesystem takes (255 on buckets and when it cannot be asked)."""
    if is_uri(storage):
        return 255
    folder = Path(storage)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def check_name_lengths(space: SearchSpace, storage: str, name: str) -> None:
    """The experiment's folder and every trial folder (named after its run: variant@swept=values) must fit."""
    limit = name_limit(storage)
    if len(name.encode()) > limit:
        raise UsageError(f"experiment name {quote(name)} is {len(name.encode())} bytes; this filesystem's file "
                         f"names hold {limit}: pass a shorter --name")
    for run in space.runs():
        if len(run.name.encode()) + TRIAL_ID_CHARS > limit:
            raise UsageError(f"variants.{run.base or run.name}: the run {quote(run.name)} names its trial folders, "
                             f"and with the trial id it is over this filesystem's {limit}-byte file names; shorten "
                             "the variant's name, or sweep that key in a domain instead of a sweep")


def check_address(address: str | None) -> None:
    """HOST:PORT must accept a connection within CONNECT_TIMEOUT_S (Ray itself waits for minutes)."""
    if not address or address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot reach the Ray cluster at --address {address} within {CONNECT_TIMEOUT_S:.0f} s "
                         f"({first_line(err, limit=120)}); start it first (launch/local_cluster.sh up) or drop "
                         "--address for a local Ray") from None


def live_nodes() -> list[dict]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def trial_resources(space: SearchSpace, splits: dict[str, dict]) -> dict[str, float]:
    """What each trial asks Ray for: its CPUs and GPUs, and memory for its worker's own copy of the data at its
    peak (aetune.train.data.worker_bytes). Asked as Ray's `memory` resource, so Ray itself runs on each node only
    as many trials as their copies fit (a reservation Ray plans with against the memory it leaves tasks when the
    node starts, not a limit it enforces)."""
    from aetune.train.data import worker_bytes  # here: the driver checks its space file before importing PyTorch

    return {"CPU": space.cpus, "GPU": space.gpus, "memory": float(max(map(worker_bytes, splits.values())))}


def node_slots(node: dict[str, float], trial: dict[str, float]) -> int:
    """How many such trials one node runs at once, counted as Ray counts (fixed point, RESOURCE_STEP units)."""
    def units(amount: float) -> int:
        return int(amount / RESOURCE_STEP + 0.5)

    return min(units(node.get(key, 0.0)) // units(need) for key, need in trial.items() if need > 0)


def check_resources(trial: dict[str, float]) -> None:
    """Some node of the connected cluster has what one trial asks for (else Ray waits forever)."""
    nodes = [n.get("Resources", {}) for n in live_nodes()]
    if any(node_slots(r, trial) >= 1 for r in nodes):
        return
    most = {key: max((r.get(key, 0.0) for r in nodes), default=0.0) for key in trial}
    short = ([key for key, need in trial.items() if most[key] < need]
             or [key for key, need in trial.items() if need > 0])  # else: no one node has them all
    raise UsageError(f"a trial asks for {describe(trial)}, but no node of this cluster has them (the most any node "
                     f"has: {describe(most)}; short: {', '.join(short)}); lower --cpus-per-trial / --gpus-per-trial "
                     "(resources: in the space), store fewer or smaller images (a worker reads the whole file or "
                     "folder, whatever train_size keeps), or add such a node")


def describe(resources: dict[str, float]) -> str:
    return (f"{resources['CPU']:g} CPUs, {resources['GPU']:g} GPUs and {resources['memory'] / 2**30:.2f} GiB of "
            "memory")


_TERMINATED = threading.Event()


def sigterm_as_interrupt() -> None:
    """SIGTERM (kill, a scheduler's stop) does what Ctrl-C does: Tune saves its state, the driver prints how to
    resume and exits 130. (ray.init installs its own handler, which exits at once: call this after it.)"""
    def interrupt(signum, frame) -> None:
        _TERMINATED.set()
        signal.raise_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, interrupt)


def terminated() -> bool:
    """Whether SIGTERM stopped the run. Tune's graceful stop marks the trials it stops TERMINATED in the results
    it returns (the workers, unlike a terminal's Ctrl-C to the whole process group, never saw the signal), so the
    results alone can read as a finished search."""
    return _TERMINATED.is_set()
