"""Malformed input to every CLI: exactly one line on stderr, exit status 2, nothing written and nothing lost.

Each case runs `python -m aetune.<cli> ARGS` in its own process, so a traceback would show. The processes are
forked from one that imported torch, torchvision, Ray and matplotlib once (not the CLI modules themselves, which
run as __main__ as under `python -m`): 3 s of imports per case would make this table cost minutes.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import torch
from conftest import DATA_ROOT, REPO, digests

from aetune.config import TrialConfig
from aetune.experiment import Summary, VariantResult, write_manifest
from aetune.models import build_model
from aetune.train.checkpoint import FORMAT_VERSION

FORK_SERVER = r"""
import json, os, runpy, sys, traceback
import matplotlib, optuna, ray, ray.tune, torch, torchvision, yaml
import aetune.evaluate.baselines, aetune.train.checkpoint, aetune.train.data, aetune.experiment, aetune.evaluate.model_figures, aetune.evaluate.plots
import aetune.search.spaces, aetune.train.logger
for line in sys.stdin:
    case = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.chdir(case["cwd"])
        os.environ.clear()
        os.environ.update(case["env"])
        for fd, name in ((1, "stdout"), (2, "stderr")):
            os.dup2(os.open(case[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        sys.argv = [case["module"], *case["args"]]
        code = 1
        try:
            runpy.run_module(case["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 0 if done.code is None else 1
        except BaseException:
            traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """run(module, args, cwd, env) -> (exit status, stdout, stderr) of `python -m module args` in a fresh process."""
    logs = tmp_path_factory.mktemp("cli-logs")
    server = subprocess.Popen([sys.executable, "-c", FORK_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})

    def run(module: str, args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
        out, err = logs / "stdout", logs / "stderr"
        case = {"module": module, "args": args, "cwd": str(cwd), "env": env, "stdout": str(out), "stderr": str(err)}
        server.stdin.write(json.dumps(case) + "\n")
        server.stdin.flush()
        code = int(server.stdout.readline())
        return code, out.read_text(), err.read_text()

    yield run
    server.stdin.close()
    server.wait(timeout=30)


# --- the world each case starts from --------------------------------------------------------------------------------

SPACE = """\
    epochs: 1
    samples: 1
    defaults: {train_size: 256, test_size: 64}
    variants:
      dense: {model: dense, hidden_layers: [16], code_size: {choice: [4, 8]}, metric: [val_bce, code_size],
              scheduler: fifo}
"""
CONFIG = {"model": "dense", "hidden_layers": [16], "code_size": 4, "epochs": 1, "train_size": 256, "test_size": 64}


def bundle(**changes) -> dict:
    """A complete aetune checkpoint of CONFIG (untrained weights: the bad-input paths never train)."""
    config = TrialConfig.from_dict(CONFIG)
    shape = changes.pop("input_shape", (1, 28, 28))
    model = build_model(config, shape)
    return {"config": config.to_dict(), "input_shape": list(shape), "model": model.state_dict(), "epoch": 1,
            "history": [{"epoch": 1, "val_loss": 0.5}], **changes}


class Payload:
    """What a malicious checkpoint carries: unpickling it calls Path.touch(marker)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (Path(self.marker),)


def experiment(ws: Path, summary: dict | None = None, space: str = SPACE, **manifest: str | None) -> Path:
    """runs/old: an experiment whose search ran (space.yaml, a trial folder), with summary.json when given;
    `manifest`: what its experiment.json holds beyond its space's digest (data_root=...)."""
    root = ws / "runs" / "old"
    (root / "dense" / "trial_1").mkdir(parents=True)
    (root / "space.yaml").write_text(textwrap.dedent(space) if space == SPACE else space)
    (root / "dense" / "trial_1" / "result.json").write_text('{"epoch": 1}\n')
    write_manifest(str(root), (root / "space.yaml").read_text(), **manifest)
    if summary is not None:
        (root / "summary.json").write_text(json.dumps(summary))
    return root


def evaluated(ws: Path, checkpoint: dict | bytes | None) -> Path:
    """A finished experiment whose one variant's best checkpoint is `checkpoint` (None: the file is missing)."""
    root = experiment(ws)
    path = root / "dense" / "trial_1" / "checkpoint.pt"
    if isinstance(checkpoint, bytes):
        path.write_bytes(checkpoint)
    elif checkpoint is not None:
        torch.save(checkpoint, path)
    best = VariantResult("1", CONFIG, {"val_loss": 0.5}, "dense/trial_1/checkpoint.pt", "dense/trial_1", trials=1)
    Summary("old", "val_loss", "min", {"dense": best}, str(DATA_ROOT)).write(str(root))
    return root


def summary_with(**fields) -> dict:
    """A summary.json of one variant whose fields are VariantResult's but `fields`."""
    result = {"trial_id": "1", "config": CONFIG, "metrics": {"val_loss": 0.5}, "checkpoint": None,
              "trial_dir": "dense/trial_1", "trials": 1, **fields}
    return {"name": "old", "metric": "val_loss", "mode": "min", "variants": {"dense": result}}


def experiment_summary_points_at(ws: Path, checkpoint: str) -> None:
    path = ws / "runs" / "old" / "summary.json"
    document = json.loads(path.read_text())
    document["variants"]["dense"]["checkpoint"] = checkpoint
    path.write_text(json.dumps(document))


def trained_out(ws: Path, checkpoint: dict | bytes) -> None:
    out = ws / "out"
    out.mkdir()
    if isinstance(checkpoint, bytes):
        (out / "checkpoint.pt").write_bytes(checkpoint)
    else:
        torch.save(checkpoint, out / "checkpoint.pt")


def good_checkpoint_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **bundle()}, buffer)
    return buffer.getvalue()


def space_file(text: str | bytes) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        path = ws / "space.yaml"
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(textwrap.dedent(text))

    return setup


def file_at(name: str, content: str | bytes = "") -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        path = ws / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(textwrap.dedent(content))

    return setup


def corrupt_mnist(ws: Path) -> None:
    raw = ws / "corrupt" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"\x00\x00\x08\x03 not an IDX file")


def nothing(ws: Path) -> None:
    pass


@dataclass
class Case:
    id: str
    module: str  # aetune.search | aetune.train | aetune.evaluate
    args: list[str]  # {ws}: the case's folder, {data}: the real MNIST root
    expect: str  # a phrase of the one-line error
    setup: Callable[[Path], None] = nothing
    env: dict[str, str] = field(default_factory=dict)


SEARCH = ["--storage", "{ws}/runs", "--data-root", "{data}", "--quiet"]
SPACE_ARG = ["--space", "{ws}/space.yaml"]
TRAIN = ["--out", "{ws}/out", "--data-root", "{data}", "--no-download", "--device", "cpu", "--hidden-layers", "16",
         "--code-size", "4", "--epochs", "1", "--train-size", "256", "--test-size", "64"]
EVALUATE = ["{ws}/runs/old", "--data-root", "{data}", "--no-download", "--device", "cpu", "--test-size", "64"]

CASES = [
    # search space files
    Case("space-missing", "aetune.search", ["--space", "{ws}/nope.yaml", *SEARCH], "cannot read search space"),
    Case("space-is-a-folder", "aetune.search", ["--space", "{ws}", *SEARCH], "Is a directory"),
    Case("space-bad-yaml", "aetune.search", SPACE_ARG + SEARCH, "not valid YAML", space_file("variants: [oops\n")),
    Case("space-empty", "aetune.search", SPACE_ARG + SEARCH, "a search space is a mapping", space_file("")),
    Case("space-a-list", "aetune.search", SPACE_ARG + SEARCH, "a search space is a mapping", space_file("- a\n- b\n")),
    Case("space-unknown-key", "aetune.search", SPACE_ARG + SEARCH, "bogus: unknown key",
         space_file(SPACE + "    bogus: 1\n")),
    Case("space-no-variants", "aetune.search", SPACE_ARG + SEARCH, "no variants", space_file("variants: {}\n")),
    Case("space-unknown-model", "aetune.search", SPACE_ARG + SEARCH, "model: unknown value 'resnet'",
         space_file(SPACE.replace("model: dense", "model: resnet"))),
    Case("space-typo-in-key", "aetune.search", SPACE_ARG + SEARCH, "widht: unknown config key",
         space_file(SPACE.replace("code_size:", "widht: 3, code_size:"))),
    Case("space-unknown-domain", "aetune.search", SPACE_ARG + SEARCH, "a domain is one of",
         space_file(SPACE.replace("{choice: [4, 8]}", "{normal: [4, 8]}"))),
    Case("space-uniform-reversed", "aetune.search", SPACE_ARG + SEARCH, "low 0.1 must be below high 0.01",
         space_file(SPACE.replace("code_size: {choice: [4, 8]}", "code_size: 4, lr: {uniform: [0.1, 0.01]}"))),
    Case("space-loguniform-zero", "aetune.search", SPACE_ARG + SEARCH, "loguniform needs low > 0",
         space_file(SPACE.replace("code_size: {choice: [4, 8]}", "code_size: 4, lr: {loguniform: [0, 0.1]}"))),
    Case("space-randint-floats", "aetune.search", SPACE_ARG + SEARCH, "randint bounds must be integers",
         space_file(SPACE.replace("{choice: [4, 8]}", "{randint: [2.5, 8]}"))),
    Case("space-grid-with-uniform", "aetune.search", SPACE_ARG + SEARCH, "searcher grid takes grid/choice",
         space_file("searcher: grid\n" + textwrap.dedent(SPACE).replace("code_size: {choice: [4, 8]}",
                                                                      "code_size: 4, lr: {uniform: [0.001, 0.01]}"))),
    Case("space-epochs-in-variant", "aetune.search", SPACE_ARG + SEARCH, "set once for the whole space",
         space_file(SPACE.replace("model: dense,", "model: dense, epochs: 3,"))),
    Case("space-bad-metric", "aetune.search", SPACE_ARG + SEARCH, "metric: unknown 'accuracy'",
         space_file("metric: accuracy\n" + textwrap.dedent(SPACE))),
    Case("space-negative-layer", "aetune.search", SPACE_ARG + SEARCH, "every layer size must be > 0",
         space_file(SPACE.replace("hidden_layers: [16]", "hidden_layers: [-3]"))),
    Case("space-zero-code", "aetune.search", SPACE_ARG + SEARCH, "code_size: must be > 0",
         space_file(SPACE.replace("{choice: [4, 8]}", "{choice: [0, 8]}"))),
    Case("space-slash-in-variant", "aetune.search", SPACE_ARG + SEARCH, "variant names are letters",
         space_file(SPACE.replace("      dense:", "      a/b:"))),
    Case("space-not-utf8", "aetune.search", SPACE_ARG + SEARCH, "not UTF-8 text", space_file(b"\xff\xfe\x00 binary")),
    # search flags
    Case("samples-zero", "aetune.search", SPACE_ARG + SEARCH + ["--samples", "0"], "samples: must be a positive",
         space_file(SPACE)),
    Case("cpus-zero", "aetune.search", SPACE_ARG + SEARCH + ["--cpus-per-trial", "0"], "resources.cpus",
         space_file(SPACE)),
    Case("gpus-negative", "aetune.search", SPACE_ARG + SEARCH + ["--gpus-per-trial", "-1"], "resources.gpus",
         space_file(SPACE)),
    Case("variants-unknown", "aetune.search", SPACE_ARG + SEARCH + ["--variants", "vae"], "'vae' is not in the space",
         space_file(SPACE)),
    Case("name-climbs-out", "aetune.search", SPACE_ARG + SEARCH + ["--name", ".."], "single folder name",
         space_file(SPACE)),
    Case("name-nests", "aetune.search", SPACE_ARG + SEARCH + ["--name", "a/b"], "single folder name",
         space_file(SPACE)),
    Case("experiment-exists", "aetune.search", SPACE_ARG + SEARCH + ["--name", "old"], "exists; continue it with",
         lambda ws: (space_file(SPACE)(ws), experiment(ws))),
    Case("storage-is-a-file", "aetune.search", SPACE_ARG + ["--storage", "{ws}/afile", "--data-root", "{data}"],
         "Not a directory", lambda ws: (space_file(SPACE)(ws), file_at("afile", "x")(ws))),
    Case("data-corrupt", "aetune.search", SPACE_ARG + ["--storage", "{ws}/runs", "--data-root", "{ws}/corrupt"],
         "cannot read mnist from", lambda ws: (space_file(SPACE)(ws), corrupt_mnist(ws))),
    # --resume
    Case("resume-without-name", "aetune.search", SEARCH + ["--resume"], "--resume needs --name"),
    Case("resume-missing", "aetune.search", SEARCH + ["--resume", "--name", "nope"], "is not an aetune experiment"),
    Case("resume-with-space", "aetune.search", SPACE_ARG + SEARCH + ["--resume", "--name", "old"], "drop --space",
         lambda ws: (space_file(SPACE)(ws), experiment(ws))),
    Case("resume-with-variants", "aetune.search", SEARCH + ["--resume", "--name", "old", "--variants", "dense"],
         "drop --space, --variants", experiment),
    Case("resume-with-override", "aetune.search", SEARCH + ["--resume", "--name", "old", "--epochs", "9"],
         "drop --space, --variants and the override flags", experiment),
    Case("resume-damaged-space", "aetune.search", SEARCH + ["--resume", "--name", "old"], "is not valid YAML",
         lambda ws: experiment(ws, space="variants: [oops\n")),
    Case("resume-invalid-space", "aetune.search", SEARCH + ["--resume", "--name", "old"], "bogus: unknown key",
         lambda ws: experiment(ws, space="bogus: 1\nvariants: {d: {model: dense}}\n")),
    Case("resume-data-moved", "aetune.search",
         ["--storage", "{ws}/runs", "--resume", "--name", "old", "--data-root", "{ws}/moved"],
         "if the dataset moved, pass --data-root", lambda ws: experiment(ws, data_root=str(DATA_ROOT))),
    Case("resume-data-moved-env", "aetune.search", ["--storage", "{ws}/runs", "--resume", "--name", "old"],
         "if the dataset moved, pass --data-root", experiment, env={"AETUNE_DATA": "{ws}/moved"}),
    Case("resume-saved-data-root-moved", "aetune.search", ["--storage", "{ws}/runs", "--resume", "--name", "old"],
         "cannot read mnist from {ws}/moved", lambda ws: experiment(ws, data_root=str(ws / "moved"))),
    Case("resume-manifest-without-digest", "aetune.search", ["--storage", "{ws}/runs", "--resume", "--name", "old"],
         "experiment.json is damaged", lambda ws: write_manifest(str(experiment(ws)))),
    # aetune.train: config files and flags
    Case("config-missing", "aetune.train", TRAIN + ["--config", "{ws}/nope.yaml"], "cannot read config"),
    Case("config-bad-yaml", "aetune.train", TRAIN + ["--config", "{ws}/c.yaml"], "cannot read config",
         file_at("c.yaml", "lr: [oops\n")),
    Case("config-not-utf8", "aetune.train", TRAIN + ["--config", "{ws}/c.yaml"], "cannot read config",
         file_at("c.yaml", b"\xff\xfe binary")),
    Case("config-a-list", "aetune.train", TRAIN + ["--config", "{ws}/c.yaml"], "must be a mapping",
         file_at("c.yaml", "- lr\n")),
    Case("config-unknown-key", "aetune.train", TRAIN + ["--config", "{ws}/c.yaml"],
         "unknown config key 'learning_rate'", file_at("c.yaml", "learning_rate: 0.1\n")),
    Case("config-bad-value", "aetune.train", TRAIN + ["--config", "{ws}/c.yaml"], "amp: must be true or false",
         file_at("c.yaml", "amp: maybe\n")),
    Case("model-unknown", "aetune.train", TRAIN + ["--model", "resnet"], "model: unknown value 'resnet'"),
    Case("lr-zero", "aetune.train", TRAIN + ["--lr", "0"], "lr: must be a positive number"),
    Case("batch-zero", "aetune.train", TRAIN + ["--batch-size", "0"], "batch_size: must be > 0"),
    Case("loss-unknown", "aetune.train", TRAIN + ["--loss", "hinge"], "loss: unknown value 'hinge'"),
    Case("device-bogus", "aetune.train", TRAIN + ["--device", "bogus"], "--device 'bogus' is not a device"),
    pytest.param(Case("device-cuda-absent", "aetune.train", TRAIN + ["--device", "cuda"], "no CUDA device"),
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")),
    Case("out-is-a-file", "aetune.train", TRAIN, "is a file", file_at("out", "x")),
    Case("out-holds-a-run", "aetune.train", TRAIN, "already holds a run",
         lambda ws: trained_out(ws, good_checkpoint_bytes())),
    Case("data-missing", "aetune.train", [*TRAIN, "--data-root", "{ws}/nodata"], "cannot read mnist from"),
    # aetune.train: checkpoints
    Case("resume-no-checkpoint", "aetune.train", TRAIN + ["--resume"], "does not exist"),
    Case("resume-truncated", "aetune.train", TRAIN + ["--resume"], "truncated or corrupt",
         lambda ws: trained_out(ws, good_checkpoint_bytes()[:2000])),
    Case("resume-other-format", "aetune.train", TRAIN + ["--resume"], f"format version {FORMAT_VERSION + 1}",
         lambda ws: trained_out(ws, bundle(format_version=FORMAT_VERSION + 1))),
    Case("resume-other-split", "aetune.train", TRAIN + ["--resume", "--val-size", "10", "--epochs", "2"],
         "a resumed run keeps its data and split", lambda ws: trained_out(ws, good_checkpoint_bytes())),
    Case("resume-other-config", "aetune.train", TRAIN + ["--resume", "--code-size", "8", "--epochs", "2"],
         "trained with code_size=4, not 8", lambda ws: trained_out(ws, good_checkpoint_bytes())),
    Case("resume-not-aetune", "aetune.train", TRAIN + ["--resume"], "not an aetune checkpoint",
         lambda ws: trained_out(ws, {"weights": torch.zeros(3)})),
    Case("resume-pickle-payload", "aetune.train", TRAIN + ["--resume"], "could run code",
         lambda ws: trained_out(ws, {**bundle(format_version=FORMAT_VERSION), "history": [Payload(ws / "ran")]})),
    # aetune.evaluate: experiment folders and checkpoints
    Case("eval-missing-folder", "aetune.evaluate", EVALUATE, "is not a finished aetune experiment"),
    Case("eval-still-running", "aetune.evaluate", EVALUATE, "still running or was interrupted", experiment),
    Case("eval-summary-not-json", "aetune.evaluate", EVALUATE, "summary.json is damaged",
         lambda ws: (experiment(ws), file_at("runs/old/summary.json", "{not json")(ws))),
    Case("eval-summary-a-list", "aetune.evaluate", EVALUATE, "summary.json is damaged",
         lambda ws: experiment(ws, summary=[1, 2])),
    Case("eval-summary-unknown-field", "aetune.evaluate", EVALUATE, "summary.json is damaged",
         lambda ws: experiment(ws, summary={"name": "old", "metric": "val_loss", "mode": "min",
                                            "variants": {"dense": {"trial": 1}}})),
    Case("eval-unknown-variant", "aetune.evaluate", EVALUATE + ["--variants", "vae"], "unknown variant 'vae'",
         lambda ws: evaluated(ws, good_checkpoint_bytes())),
    Case("eval-test-size-zero", "aetune.evaluate", [*EVALUATE, "--test-size", "0"], "--test-size must be > 0"),
    Case("eval-device-bogus", "aetune.evaluate", [*EVALUATE, "--device", "bogus"], "is not a device"),
    Case("eval-bucket", "aetune.evaluate", ["s3://bucket/runs/old"], "reads checkpoints from a local folder"),
    Case("eval-checkpoint-missing", "aetune.evaluate", EVALUATE, "does not exist", lambda ws: evaluated(ws, None)),
    Case("eval-checkpoint-truncated", "aetune.evaluate", EVALUATE, "truncated or corrupt",
         lambda ws: evaluated(ws, good_checkpoint_bytes()[:2000])),
    Case("eval-checkpoint-other-format", "aetune.evaluate", EVALUATE, f"format version {FORMAT_VERSION + 1}",
         lambda ws: evaluated(ws, bundle(format_version=FORMAT_VERSION + 1))),
    # issue 20: types and ranges, sizes, names, resources, YAML, summaries, checkpoints outside the experiment
    Case("space-name-a-number", "aetune.search", SPACE_ARG + SEARCH, "name: must be a text",
         space_file("name: 123\n" + textwrap.dedent(SPACE))),
    Case("space-name-a-list", "aetune.search", SPACE_ARG + SEARCH, "name: must be a text",
         space_file("name: [a, b]\n" + textwrap.dedent(SPACE))),
    Case("space-seed-negative", "aetune.search", SPACE_ARG + SEARCH, "space.yaml: seed: must be an integer from 0",
         space_file("seed: -1\n" + textwrap.dedent(SPACE))),
    Case("space-seed-huge", "aetune.search", SPACE_ARG + SEARCH, "seed: must be an integer from 0",
         space_file("seed: 4294967296\n" + textwrap.dedent(SPACE))),
    Case("search-seed-negative", "aetune.search", SPACE_ARG + SEARCH + ["--seed", "-1"], "seed: must be an integer",
         space_file(SPACE)),
    Case("space-code-size-huge", "aetune.search", SPACE_ARG + SEARCH, "variants.dense.model size: ",
         space_file(SPACE.replace("{choice: [4, 8]}", "{choice: [4, 100000000000000]}"))),
    Case("space-variant-name-too-long", "aetune.search", SPACE_ARG + SEARCH, "file names; shorten",
         space_file(SPACE.replace("      dense:", "      " + "d" * 300 + ":"))),
    Case("space-sweep-value-too-long", "aetune.search", SPACE_ARG + SEARCH, "file names; shorten",
         space_file(SPACE.replace("hidden_layers: [16], ", "").replace(
             "scheduler: fifo}", "scheduler: fifo, sweep: {hidden_layers: [[" + ", ".join(["16"] * 80) + "]]}}"))),
    Case("name-too-long", "aetune.search", SPACE_ARG + SEARCH + ["--name", "n" * 300], "shorter --name",
         space_file(SPACE)),
    Case("cpus-infinite", "aetune.search", SPACE_ARG + SEARCH + ["--cpus-per-trial", "inf"], "resources.cpus",
         space_file(SPACE)),
    Case("cpus-below-rays-unit", "aetune.search", SPACE_ARG + SEARCH + ["--cpus-per-trial", "0.00001"],
         "resources.cpus: must be a finite number >= 0.0001", space_file(SPACE)),
    Case("cpus-beyond-the-cluster", "aetune.search", SPACE_ARG + SEARCH + ["--cpus-per-trial", "4096"],
         "GiB of memory; short: CPU); lower --cpus-per-trial", space_file(SPACE)),
    Case("memory-beyond-the-cluster", "aetune.search", SPACE_ARG + SEARCH,  # a worker reads all 60,000 (3x 47 MB)
         "asks for 1 CPUs, 0 GPUs and 0.13 GiB of memory, but no node of this cluster has them (the most any node "
         "has: 2 CPUs, 0 GPUs and 0.05 GiB of memory; short: memory)", space_file(SPACE),
         env={"RAY_OVERRIDE_RESOURCES": '{"CPU": 2, "memory": 50000000}'}),
    pytest.param(Case("gpus-beyond-the-cluster", "aetune.search", SPACE_ARG + SEARCH + ["--gpus-per-trial", "1"],
                      "GiB of memory; short: GPU); lower", space_file(SPACE)),
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")),
    Case("address-unreachable", "aetune.search", SPACE_ARG + SEARCH + ["--address", "127.0.0.1:1"],
         "cannot reach the Ray cluster at --address 127.0.0.1:1 within", space_file(SPACE)),
    Case("space-duplicate-key", "aetune.search", SPACE_ARG + SEARCH, "key 'epochs' appears twice",
         space_file(SPACE + "    epochs: 2\n")),
    Case("space-alias-bomb", "aetune.search", SPACE_ARG + SEARCH, "aliases expand to 926,177,123 values, over the 100,000",
         space_file("a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
             f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9)) +
             "defaults: {lr: *a8}\nvariants: {d: {model: dense}}\n")),
    Case("space-value-quoted-short", "aetune.search", SPACE_ARG + SEARCH, "characters)",
         space_file(SPACE.replace("hidden_layers: [16]", "hidden_layers: [" + ", ".join(["x"] * 5000) + "]"))),
    Case("space-defaults-named", "aetune.search", SPACE_ARG + SEARCH, "space.yaml: defaults.train_size: must be > 0",
         space_file(SPACE.replace("train_size: 256", "train_size: -1"))),
    Case("config-duplicate-key", "aetune.train", TRAIN + ["--config", "{ws}/c.yaml"], "key 'lr' appears twice",
         file_at("c.yaml", "lr: 0.1\nlr: 0.2\n")),
    Case("train-seed-huge", "aetune.train", TRAIN + ["--seed", "100000000000000000000"], "seed: must be an integer"),
    Case("train-code-size-huge", "aetune.train", [*TRAIN, "--code-size", "100000000000000"], "model size: "),
    Case("out-under-a-file", "aetune.train", [*TRAIN, "--out", "{ws}/afile/sub"], "afile is a file",
         file_at("afile", "x")),
    Case("eval-summary-checkpoint-a-number", "aetune.evaluate", EVALUATE, "variants.dense.checkpoint is 5",
         lambda ws: experiment(ws, summary=summary_with(checkpoint=5))),
    Case("eval-summary-checkpoint-a-dict", "aetune.evaluate", EVALUATE, "variants.dense.checkpoint is {",
         lambda ws: experiment(ws, summary=summary_with(checkpoint={"a": 1}))),
    Case("eval-summary-errored-a-text", "aetune.evaluate", EVALUATE, "variants.dense.errored is 'oops'",
         lambda ws: experiment(ws, summary=summary_with(errored="oops"))),
    Case("eval-checkpoint-outside", "aetune.evaluate", EVALUATE, "outside {ws}/runs/old; restore summary.json",
         lambda ws: (evaluated(ws, good_checkpoint_bytes()), file_at("elsewhere/checkpoint.pt",
                                                                     good_checkpoint_bytes())(ws),
                     experiment_summary_points_at(ws, str(ws / "elsewhere" / "checkpoint.pt")))),
    Case("eval-checkpoint-climbs-out", "aetune.evaluate", EVALUATE, "outside {ws}/runs/old",
         lambda ws: (evaluated(ws, good_checkpoint_bytes()),
                     experiment_summary_points_at(ws, "../../elsewhere/checkpoint.pt"))),
    Case("eval-checkpoint-other-shape", "aetune.evaluate", EVALUATE,
         "trained on images of shape (1, 32, 32), but mnist has (1, 28, 28)",
         lambda ws: evaluated(ws, bundle(format_version=FORMAT_VERSION, input_shape=(1, 32, 32)))),
]


# Ray's own log lines when a case gets as far as starting Ray (the resource checks): a date, a level, no traceback
RAY_LOG = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\t(INFO|WARNING) [\w.]+:\d+ -- ")


def fill(text: str, ws: Path) -> str:
    return text.replace("{ws}", str(ws)).replace("{data}", str(DATA_ROOT))


def test_the_table_is_large_and_covers_every_cli():
    cases = [c.values[0] if hasattr(c, "values") else c for c in CASES]
    assert len(cases) >= 30
    assert {c.module for c in cases} == {"aetune.search", "aetune.train", "aetune.evaluate"}
    assert len({c.id for c in cases}) == len(cases)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(case, cli, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    case.setup(ws)
    before = digests(ws)
    env = {**os.environ, "AETUNE_DATA": str(DATA_ROOT), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env |= {k: fill(v, ws) for k, v in case.env.items()}
    code, out, err = cli(case.module, [fill(a, ws) for a in case.args], REPO, env)
    err = "".join(line for line in err.splitlines(keepends=True) if not RAY_LOG.match(line))
    assert err.count("\n") == 1 and err.startswith("aetune: error: "), err
    assert fill(case.expect, ws) in err, err
    assert code == 2
    assert digests(ws) == before  # nothing written, nothing lost
