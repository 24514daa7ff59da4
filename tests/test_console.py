"""What a person reads while a search runs (aetune.search.console) and what Ray must not print over it."""
from __future__ import annotations

import io
import logging
from pathlib import Path

from ray.tune.experiment import Trial

from aetune.experiment import REPEAT_KEY, VARIANT_KEY
from aetune.search.console import LiveStatus, hide_ray_resume_hint
from aetune.search.searchers import EnumeratedSearch, RoutedSearch, VariantRouter
from aetune.search.space_file import load_space

QUICK = Path(__file__).resolve().parents[1] / "search_spaces" / "quick.yaml"
EPOCHS = load_space(QUICK, models=False).epochs


def trial(variant: str, status: str, repeat: int | None = None, **result) -> Trial:
    config = {VARIANT_KEY: variant} if repeat is None else {VARIANT_KEY: variant, REPEAT_KEY: repeat}
    made = Trial("train_trial", config=config, stub=True)
    made.set_status(status)
    if result:
        made.update_last_result(result)
    return made


class Pipe(io.StringIO):
    """Where the view draws: a terminal, or not (a log file)."""

    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def status(monkeypatch, tty: bool) -> tuple[LiveStatus, Pipe]:
    view, pipe = LiveStatus(load_space(QUICK, models=False), "quick"), Pipe(tty)
    monkeypatch.setattr(LiveStatus, "stream", property(lambda self: pipe))
    return view, pipe


def trials() -> list[Trial]:
    return [trial("dense@code_size=8", Trial.TERMINATED, epoch=4, val_bce=0.18),
            trial("dense@code_size=8", Trial.TERMINATED, epoch=2, val_bce=0.25),  # stopped by ASHA
            trial("dense@code_size=8", Trial.RUNNING, epoch=3, val_bce=0.21),
            trial("sparse", Trial.TERMINATED, epoch=4, val_bce=0.20, code_l1=1.7),
            trial("sparse", Trial.TERMINATED, epoch=4, val_bce=0.19, code_l1=9.0),
            trial("sparse", Trial.TERMINATED, epoch=4, val_bce=0.30, code_l1=9.5),  # dominated
            trial("vae@code_size=2", Trial.RUNNING, epoch=1, val_loss=190.0, val_bce=0.3),
            trial("conv", Trial.ERROR)]


def test_the_view_counts_trials_per_variant_and_state_with_each_variants_own_objective(monkeypatch):
    view, _ = status(monkeypatch, tty=True)
    lines = view.frame(trials())
    assert lines[0].startswith("[quick ") and "6/18 trials finished (1 stopped early, 1 errored), 0/24 repeats " \
        "finished, 2 running" in lines[0]
    assert lines[1].endswith("repeats  best so far (validation)")
    row = {line.split()[0]: line for line in lines[2:]}
    assert row["dense@code_size=8"].split()[1:6] == ["1", "1", "1", "0", "0"]  # done stopped running waiting errored
    assert row["dense@code_size=8"].endswith("val_bce 0.18")
    assert row["sparse"].split()[1:6] == ["3", "0", "0", "0", "0"]
    assert row["sparse"].endswith("front of 2: val_bce 0.19..0.2, code_l1 1.7..9")
    assert row["vae@code_size=2"].endswith("val_loss 190")  # its own objective, not val_bce
    assert row["conv"].split()[5] == "1"
    running = lines[lines.index("running") + 1:]
    assert len(running) == 2 and f"epoch 3/{EPOCHS}  val_bce 0.21" in running[0] and f"epoch 1/{EPOCHS}  val_loss 190" in running[1]


def test_repeats_are_counted_apart_from_the_search_and_a_variant_ends_with_its_repeats(monkeypatch):
    """quick.yaml: conv's search of 3 trials, then its pick repeated under 3 seeds."""
    view, pipe = status(monkeypatch, tty=False)
    search = [trial("conv", Trial.TERMINATED, epoch=4, val_bce=0.2, code_size=784) for _ in range(3)]
    repeats = [trial("conv", Trial.TERMINATED, k, epoch=4, val_bce=0.1, code_size=784) for k in (1, 2)]
    running = [trial("conv", Trial.RUNNING, 3, epoch=1, val_bce=0.4, code_size=784)]
    pending = [trial("sparse", Trial.PENDING, 1)]  # waiting for a worker: neither running nor finished
    every = search + repeats + running + pending
    count = view.counts(every)["conv"]
    assert [count[s] for s in ("done", "running", "waiting", "repeats", "repeats_running")] == [3, 0, 0, 2, 1]
    assert "3/18 trials finished (0 stopped early, 0 errored), 2/24 repeats finished, 1 running" in view.headline(every)
    running[0].config["seed"] = 3  # the pick's seed 0, plus the repeat's index
    shown = [what for _, what in view.running(every)]
    assert shown == [f"repeat 3, seed 3: epoch 1/{EPOCHS}  val_bce 0.4 code_size 784"]
    assert view.best("conv", every) == "front of 1: val_bce 0.2, code_size 784"  # the repeats' 0.1 is not the search's
    view._announce_finished(every)
    assert "conv finished" not in pipe.getvalue()  # its third repeat runs
    running[0].set_status(Trial.TERMINATED)
    view._announce_finished(every)
    assert "conv finished: 3 done, 0 stopped early, 0 errored, 3 repeats" in pipe.getvalue()


def test_the_best_so_far_names_the_split_it_is_on(monkeypatch):
    view = LiveStatus(load_space(QUICK, models=False), "quick",
                      splits={"conv": {"val_from": "test"}, "sparse": {"val_from": "train"}})
    rows = {line.split()[0]: line for line in view.frame(trials())[2:]}
    assert view.frame(trials())[1].endswith("repeats  best so far")
    assert rows["sparse"].endswith("(validation)") and rows["conv"].endswith("(test)")


def test_on_a_terminal_the_view_is_redrawn_in_place(monkeypatch):
    view, pipe = status(monkeypatch, tty=True)
    view.on_experiment_end(trials())
    first = pipe.getvalue()
    view.on_experiment_end(trials())
    again = pipe.getvalue()[len(first):]
    assert again.startswith(f"\x1b[{len(first.splitlines())}F\x1b[J")  # back over the last frame, then clear it


def test_elsewhere_the_view_is_plain_lines_one_per_finished_variant(monkeypatch):
    view, pipe = status(monkeypatch, tty=False)
    view._last -= 60  # a period has passed
    every = trials() + [trial("conv", Trial.ERROR), trial("conv", Trial.TERMINATED, epoch=4, val_bce=0.1,
                                                             code_size=784)]  # conv's budget of 3 is spent
    every += [trial("conv", Trial.TERMINATED, k, epoch=4, val_bce=0.1, code_size=784) for k in (1, 2, 3)]
    view.on_step_end(1, every)
    view.on_step_end(2, every)  # no new variant finished, the period not over: nothing printed
    lines = pipe.getvalue().splitlines()
    assert "\x1b" not in pipe.getvalue()
    assert len(lines) == 2 and "conv finished: 1 done, 0 stopped early, 2 errored, 3 repeats; front of 1" in lines[0]
    assert "8/18 trials finished" in lines[1] and f"epoch 3/{EPOCHS}  val_bce 0.21" in lines[1]


def test_a_trials_error_reaches_the_console_with_its_error_file(monkeypatch, tmp_path):
    view, pipe = status(monkeypatch, tty=False)
    failed = trial("conv", Trial.ERROR)
    (tmp_path / "error.txt").write_text("Failure # 1\nTraceback (most recent call last):\n  ...\n"
                                        "RuntimeError: persistent failure\n\n")
    monkeypatch.setattr(Trial, "local_path", property(lambda self: str(tmp_path)))  # the driver's copy
    monkeypatch.setattr(Trial, "path", property(lambda self: str(tmp_path / "conv-x")))  # where the trial is kept
    failed.run_metadata.error_filename = "error.txt"
    view.on_trial_error(1, [failed], failed)
    assert pipe.getvalue() == (f"aetune: ERROR trial {failed} failed for good (RuntimeError: persistent failure; "
                               f"error file: {tmp_path / 'conv-x' / 'error.txt'})\n")


def test_quiet_draws_no_view(monkeypatch):
    view, pipe = status(monkeypatch, tty=True)
    view.view = False
    view.on_step_end(1, trials())
    view.on_experiment_end(trials())
    assert pipe.getvalue() == ""


def test_rays_tuner_restore_hint_is_hidden(caplog):
    hide_ray_resume_hint()
    ray_tune = logging.getLogger("ray.tune.tune")
    with caplog.at_level(logging.WARNING, logger="ray.tune.tune"):
        ray_tune.warning("Experiment has been interrupted, but the most recent state was saved.\n"
                         "Resume experiment with: Tuner.restore(path=\"/x\", trainable=...)")
        ray_tune.warning("another warning")
    assert [r.getMessage() for r in caplog.records] == ["another warning"]


class Recorded(VariantRouter):
    """The real router, noting the folder its snapshot is written in."""

    written_in: list[Path] = []

    def save(self, checkpoint_path: str) -> None:
        Recorded.written_in.append(Path(checkpoint_path).parent)
        super().save(checkpoint_path)


def test_searcher_snapshots_are_never_half_written_in_the_folder_rays_syncer_copies(tmp_path):
    """Ray's driver syncer copies the staging folder in the background; a temp file listed there and renamed
    before its copy was the FileNotFoundError traceback. The temp files are written beside it."""
    staging = tmp_path / "driver_artifacts"
    staging.mkdir()
    generator = RoutedSearch(Recorded({"a": EnumeratedSearch([{"lr": 0.1}])}, {"a": 1}, {}))
    generator.save_to_dir(str(staging), "session")
    assert Recorded.written_in and staging not in Recorded.written_in
    assert sorted(p.name for p in staging.iterdir()) == ["search_gen_state-session.json", "searcher-state-session.pkl"]
    restored = RoutedSearch(VariantRouter({"a": EnumeratedSearch([{"lr": 0.1}])}, {"a": 1}, {}))
    restored.restore_from_dir(str(staging))
    assert restored.searcher.budgets == {"a": 1}
