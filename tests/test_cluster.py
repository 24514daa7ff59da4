"""Multi-node: a real 2-node Ray cluster (launch/local_cluster.sh) runs the search; losing a node loses nothing."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DATA_ROOT, REPO, write_space
from test_launch import local_cluster  # noqa: F401  (the module's cluster)

from aetune.experiment import Summary
from aetune.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow
# Conv trials last seconds: long enough that the worker node's actor (which takes ~10 s to import torch) gets some.
SPACE = """\
    epochs: EPOCHS
    samples: 1
    searcher: grid
    scheduler: fifo
    metric: [val_bce, code_size]  # the filter lists differ in code size: a front, not a "best"
    resources: {cpus: 1}
    defaults: {train_size: 3000, test_size: 500}
    variants:
      conv:
        model: conv
        filters: {grid: [[8], [8, 8], [4, 4], [8, 4]]}
"""


@pytest.fixture(scope="module")
def cluster(local_cluster) -> dict[str, str]:
    """A driver's environment for the module's 2-node cluster (head + 1 worker, 1 CPU each)."""
    return {**local_cluster.env, "AETUNE_DATA": str(DATA_ROOT)}


def search(env: dict, storage: Path, name: str, space: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aetune.search", "--space", str(space), "--storage", str(storage),
                             "--name", name, "--address", "auto", "--quiet"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def results(experiment: Path) -> dict[str, list[dict]]:
    return {t.name: [json.loads(line) for line in (t / "result.json").read_text().splitlines()]
            for t in sorted(experiment.glob("conv-*")) if (t / "result.json").exists()}


def test_search_spreads_over_both_nodes_and_evaluate_reads_every_checkpoint(cluster, tmp_path):
    space = write_space(tmp_path / "s.yaml", SPACE.replace("EPOCHS", "3"))
    driver = search(cluster, tmp_path, "two", space)
    out, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, out[-3000:]
    trials = results(tmp_path / "two")
    assert len(trials) == 4 and all([r["epoch"] for r in rows] == [1, 2, 3] for rows in trials.values())
    nodes = {row["node_id"] for rows in trials.values() for row in rows}
    assert len(nodes) == 2, "trials did not run on both nodes"
    for checkpoint in (tmp_path / "two").rglob("checkpoint.pt"):
        assert load_checkpoint(checkpoint)["epoch"] >= 1
    evaluate = subprocess.run([sys.executable, "-m", "aetune.evaluate", str(tmp_path / "two"), "--test-size", "500"],
                              cwd=REPO, env=cluster, capture_output=True, text=True, timeout=600)
    assert evaluate.returncode == 0, evaluate.stderr[-2000:]
    assert (tmp_path / "two" / "eval" / "report.html").is_file()


def test_losing_a_worker_node_mid_search_loses_nothing(cluster, local_cluster, tmp_path):  # last: kills the worker
    epochs = 30  # long enough that the worker's trial is still training when the kill lands (0.2-0.5 s an epoch)
    space = write_space(tmp_path / "s.yaml", SPACE.replace("EPOCHS", str(epochs)))
    driver = search(cluster, tmp_path, "lossy", space)
    head = subprocess.run([sys.executable, "-c", "import ray; ray.init(address='auto', logging_level='ERROR'); "
                           "print(ray.get_runtime_context().get_node_id())"], env=cluster, capture_output=True,
                          text=True, timeout=120).stdout.split()[-1]  # a driver's node: the head
    deadline = time.time() + 300
    while time.time() < deadline and driver.poll() is None:  # a trial is well under way on the worker
        if any(row["node_id"] != head and row["epoch"] >= 2 for rows in results(tmp_path / "lossy").values()
               for row in rows):
            break
        time.sleep(0.2)
    local_cluster.kill_worker()
    out, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, out[-3000:]
    trials = results(tmp_path / "lossy")
    assert len(trials) == 4
    for name, rows in trials.items():
        assert [r["epoch"] for r in rows] == list(range(1, epochs + 1)), name  # every epoch, once
    moved = [rows for rows in trials.values() if rows[0]["node_id"] != head and rows[-1]["node_id"] == head]
    assert moved, "no trial was rescheduled from the lost worker onto the head"
    assert Summary.read(tmp_path / "lossy").variants["conv"].metrics["epoch"] == epochs
