"""The package's shape: imports point down (models and the shared top <- train <- search; train <- evaluate), and an
experiment saved by the flat layout of aetune 0.1.0 is evaluated as it is and refused, in one line, on --resume."""
from __future__ import annotations

import ast
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA_ROOT, REPO, run_search, search_env

PACKAGE = REPO / "aetune"
LEGACY = Path(__file__).resolve().parent / "data" / "legacy-0.1.0"
COMMANDS = ("train", "search", "evaluate")
# What each layer may import; the shared top ("") and models/ import none of the command packages.
ALLOWED = {
    "": {"", "models"},
    "models": {"", "models"},
    "train": {"", "models", "train"},
    "search": {"", "models", "train", "search"},
    "evaluate": {"", "models", "train", "evaluate"},
}


def layer(module: str) -> str:
    """aetune.search.spaces -> "search"; aetune.config, aetune -> "" (the shared top)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in (*COMMANDS, "models") else ""


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def aetune_imports(path: Path) -> set[str]:
    """Every aetune module a file imports, at the top or inside a function (a lazy import is still an edge)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name == "aetune" or name.startswith("aetune.")}


def back_edges() -> list[str]:
    edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        for target in sorted(aetune_imports(path)):
            if target != "aetune" and layer(target) not in ALLOWED[layer(source)]:
                edges.append(f"{source} imports {target}")
    return edges


def test_imports_point_down():
    assert back_edges() == []


def test_the_import_walk_sees_a_back_edge(tmp_path, monkeypatch):
    """The walk itself: a train module importing the search driver is caught, at the top or inside a function."""
    fake = tmp_path / "aetune" / "train" / "fake.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from aetune.search import tuner\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "aetune")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert back_edges() == ["aetune.train.fake imports aetune.search", "aetune.train.fake imports aetune.search.tuner"]


def test_each_command_is_a_package_with_a_main():
    for command in COMMANDS:
        assert (PACKAGE / command / "__main__.py").is_file()
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "config.py", "errors.py", "experiment.py", "images.py", "metrics.py", "numbers.py",
                   "pareto.py", "storage.py", "yamlfile.py"]


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def legacy(tmp_path) -> Path:
    """A copy of the experiment aetune 0.1.0 saved (tests/data/README.md)."""
    copy = tmp_path / "runs" / "legacy"
    shutil.copytree(LEGACY, copy)
    return copy


def test_a_flat_layout_experiment_is_refused_on_resume_in_one_line(legacy):
    before = digest(legacy)
    run = run_search("--storage", str(legacy.parent), "--name", "legacy", "--resume", timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "aetune 0.1.0" in lines[0] and "python -m aetune.evaluate" in lines[0], lines
    assert digest(legacy) == before  # nothing written


@pytest.mark.slow
def test_a_flat_layout_experiment_still_evaluates(legacy):
    run = subprocess.run([sys.executable, "-m", "aetune.evaluate", str(legacy), "--data-root", str(DATA_ROOT),
                          "--no-download"], capture_output=True, text=True, env=search_env(), timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    metrics = json.loads((legacy / "eval" / "metrics.json").read_text())
    assert (legacy / "eval" / "report.html").is_file()
    assert [row["name"] for row in metrics["leaderboard"] if row["kind"] == "model"] == ["dense"]


def test_a_new_experiment_records_its_layout(searched):
    manifest = json.loads((searched / "experiment.json").read_text())
    from aetune import __version__
    from aetune.experiment import LAYOUT, space_digest

    assert manifest == {"aetune": __version__, "layout": LAYOUT, "created": manifest["created"],
                        "space_sha256": space_digest((searched / "space.yaml").read_text()),
                        "data_root": manifest["data_root"]}
    assert len(manifest["created"]) == 12 and manifest["created"].isalnum()
    assert manifest["data_root"] == str(DATA_ROOT)  # what --resume falls back on


def test_console_scripts_name_each_commands_main():
    import importlib
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {f"aetune-{c}" for c in COMMANDS}
    for command, target in scripts.items():
        module, _, function = target.partition(":")
        assert module == f"aetune.{command.removeprefix('aetune-')}.__main__"
        assert callable(getattr(importlib.import_module(module), function))
