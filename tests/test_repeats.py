"""Repeats of a pick across a driver crash: the router's repeat state agrees with the trials Tune restored, so a
resumed search neither loses a repeat (one asked after Tune's snapshot is asked again, under the same seed) nor
runs one twice (one Tune restored is never asked again), whichever moment the router's own snapshot is from."""
from __future__ import annotations

from ray.tune.experiment import Trial

from aetune.experiment import REPEAT_KEY, VARIANT_KEY
from aetune.search.repeats import Repeats


def finished_search(repeats: Repeats) -> dict[str, Trial]:
    """Two finished trials of variant `dense`, the second the better: Tune's restored trials."""
    trials = {}
    for trial_id, bce in (("a", 0.2), ("b", 0.1)):
        config = {"seed": 0, "lr": bce, VARIANT_KEY: "dense"}
        trial = Trial("train_trial", config=config, trial_id=trial_id, stub=True)
        trial.set_status(Trial.TERMINATED)
        trial.run_metadata.last_result = {"epoch": 3, "val_bce": bce}
        trial.run_metadata.update_metric("val_bce", bce)
        repeats.asked("dense", trial_id, config)
        repeats.on_complete("dense", trial_id, {"epoch": 3, "val_bce": bce}, error=False)
        trials[trial_id] = trial
    return trials


def restored(trial_id: str, config: dict, status: str) -> Trial:
    trial = Trial("train_trial", config=config, trial_id=trial_id, stub=True)
    trial.set_status(status)
    return trial


def test_a_repeat_asked_after_tunes_snapshot_is_asked_again_under_the_same_seed():
    repeats = Repeats({"dense": 3}, {"dense": (("val_bce",), ("min",))}, epochs=3)
    trials = finished_search(repeats)
    handed = [repeats.suggest("dense", f"r{i}") for i in (1, 2, 3)]
    assert [c["seed"] for c in handed] == [1, 2, 3] and {c["lr"] for c in handed} == {0.1}
    # Tune's snapshot holds r1 (finished) and r3 (running), not r2: r2 is lost with the driver
    tune_trials = {**trials, "r1": restored("r1", handed[0], Trial.TERMINATED),
                   "r3": restored("r3", handed[2], Trial.RUNNING)}
    repeats.reconcile(tune_trials)
    assert repeats.pending("dense") and repeats.in_flight("dense") == 1  # r3 runs again; r2 is to be asked
    again = repeats.suggest("dense", "r4")
    assert again["seed"] == 2 and again[REPEAT_KEY] == 2 and not repeats.pending("dense")


def test_a_repeat_tune_restored_but_the_router_never_saved_is_not_asked_twice():
    """The router's snapshot is older than Tune's: it knows no repeat, Tune restored one."""
    fresh = Repeats({"dense": 2}, {"dense": (("val_bce",), ("min",))}, epochs=3)
    trials = finished_search(Repeats({"dense": 2}, {"dense": (("val_bce",), ("min",))}, epochs=3))
    first = {"seed": 1, "lr": 0.1, VARIANT_KEY: "dense", REPEAT_KEY: 1, "repeat_of": "b"}
    fresh.reconcile({**trials, "r1": restored("r1", first, Trial.TERMINATED)})
    assert fresh.pick("dense") == "b"  # rebuilt from the results Tune restored
    assert fresh.ready("dense", search_over=True)
    second = fresh.suggest("dense", "r2")
    assert second["seed"] == 2 and not fresh.pending("dense")
