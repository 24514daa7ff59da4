"""What the quick job's repeats cost: search_spaces/quick.yaml as shipped (every pick repeated under 3 new seeds),
the same space with `--repeats 0` (its search alone), and the job it was before repeats (3 trials per variant, 4 for
sparse and denoising, 6,000 images, 4 epochs, no repeats), each run once, one after the other, in a fresh driver.

    python bench/repeats_cost.py [--data-root DIR]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import yaml
from _common import REPO, footer, header, progress, python_env, search, table, trials

QUICK = REPO / "search_spaces" / "quick.yaml"


def before_repeats(folder: Path) -> Path:
    """quick.yaml as it was before repeats: samples 3 (sparse and denoising 4), 6,000 images, 4 epochs, no repeats."""
    raw = yaml.safe_load(QUICK.read_text())
    raw.pop("repeats", None)
    raw["samples"], raw["epochs"], raw["defaults"]["train_size"] = 3, 4, 6000
    for name in ("sparse", "denoising"):
        raw["variants"][name]["samples"] = 4
    path = folder / "quick_before.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root")
    args = parser.parse_args()
    header()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        jobs = [("quick.yaml as shipped (repeats: 3)", [], QUICK),
                ("quick.yaml --repeats 0 (its search alone)", ["--repeats", "0"], QUICK),
                ("the job before repeats (samples 3, sparse/denoising 4; 6k images, 4 epochs)", [], before_repeats(folder))]
        for i, (label, extra, space) in enumerate(jobs):
            progress(label)
            env = python_env({"AETUNE_DATA": args.data_root} if args.data_root else None)
            run = search(["--space", str(space), "--storage", str(folder), "--name", f"job{i}", "--quiet", *extra],
                         env=env)
            found = trials(folder / f"job{i}")
            repeated = [t for t in found if "repeat" in t["config"]]
            seconds = sum(t["results"][-1]["time_total_s"] for t in found)
            rows.append([label, len(found), len(repeated), round(run.wall, 1), round(seconds, 1)])
    print(table(["job", "trials", "of which repeats", "wall s", "trial-seconds"], rows))
    footer()


if __name__ == "__main__":
    main()
