"""bench/: the cluster simulator's ASHA rule (held against Ray's ASHAScheduler) and its event loop,
search_efficiency's budget accounting, and trainer_vs_bare's smoke run. No timing."""
from __future__ import annotations

import random
import subprocess
import sys

import pytest
from conftest import DATA_ROOT, REPO

sys.path.insert(0, str(REPO / "bench"))
from cluster_sim import Asha, Plan, simulate  # noqa: E402
from search_efficiency import overlapped, within_budget, work_order  # noqa: E402


@pytest.mark.parametrize("grace, rf, max_t, mode", [(1, 2, 4, "min"), (2, 3, 30, "min"), (1, 3, 9, "max"),
                                                    (1, 4, 16, "min")])
def test_simulated_asha_decides_as_rays_scheduler(grace, rf, max_t, mode):
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    theirs = ASHAScheduler(time_attr="epoch", metric="v", mode=mode, max_t=max_t, grace_period=grace,
                           reduction_factor=rf)
    ours = Asha(grace, rf, max_t, mode)
    rng, live, created, stopped, finished = random.Random(grace * rf), {}, 0, 0, 0
    while created < 60 or live:  # trials arrive while others run; results come in random order
        if created < 60 and (not live or rng.random() < 0.3):
            trial = Trial("stub", trial_id=f"t{created}", stub=True)
            theirs.on_trial_add(None, trial)
            live[trial.trial_id] = [trial, 0, rng.gauss(0, 1)]
            created += 1
        trial_id = rng.choice(sorted(live))
        trial, epoch, quality = live[trial_id]
        epoch += 1
        live[trial_id][1] = epoch
        result = {"epoch": epoch, "v": quality + rng.gauss(0, 0.5) + 1 / epoch}
        decision = theirs.on_trial_result(None, trial, result)
        keeps = ours.keeps(trial_id, epoch, result["v"])
        assert keeps == (decision == TrialScheduler.CONTINUE), (trial_id, epoch)
        if not keeps:
            theirs.on_trial_complete(None, trial, result)
            del live[trial_id]
            stopped, finished = stopped + (epoch < max_t), finished + (epoch == max_t)
    assert stopped and finished  # both kinds of decision were compared


def plan(name: str, trials: int, epochs: int, seconds: float, asha: tuple | None = None) -> Plan:
    return Plan(name, trials, epochs, asha, [seconds])


def test_fifo_trials_fill_the_workers_in_waves():
    result = simulate([plan("a", 10, 3, 2.0)], workers=4, concurrent=False)
    assert result["wall"] == pytest.approx(18.0)  # waves of 4, 4 and 2 trials of 6 s
    assert result["utilisation"] == pytest.approx(60 / (4 * 18))
    assert result["epochs"] == 30


def test_concurrent_variants_share_the_workers_sequential_ones_wait_for_the_tail():
    plans = [plan("long", 2, 1, 10.0), plan("short", 6, 1, 1.0)]
    sequential = simulate(plans, workers=4, concurrent=False)
    concurrent = simulate(plans, workers=4, concurrent=True)
    assert sequential["wall"] == pytest.approx(12.0)  # 10 s for "long" (2 workers idle), then 6 x 1 s on 4
    assert concurrent["wall"] == pytest.approx(10.0)  # "short" runs beside "long"
    assert concurrent["utilisation"] > sequential["utilisation"]


def test_asha_stops_trials_and_saves_work():
    fifo = simulate([plan("a", 32, 9, 1.0)], workers=4, concurrent=False, seed=1)
    asha = simulate([plan("a", 32, 9, 1.0, asha=(1, 3, "min"))], workers=4, concurrent=False, seed=1)
    assert fifo["epochs"] == 32 * 9
    assert 32 <= asha["epochs"] < fifo["epochs"] / 2 and asha["wall"] < fifo["wall"]


def test_a_search_cut_at_the_budget_sees_only_the_work_before_it():
    curves = [[0.5, 0.4, 0.3], [0.6], [0.35, 0.2], [0.1]]  # in the order the work was done
    cut = within_budget(curves, budget=5, target=0.32)
    assert (cut.best, cut.epochs_to_target, cut.trials, cut.complete) == (0.3, 3, 3, True)
    assert within_budget(curves, budget=2, target=0.32).epochs_to_target is None
    assert within_budget(curves, budget=6, target=0.2).epochs_to_target == 6
    assert not within_budget(curves, budget=8, target=0.0).complete
    assert within_budget([[float("nan")], [0.9]], budget=1, target=1.0).best == float("inf")


def test_trials_are_ordered_by_their_first_start_and_overlap_is_seen():
    trials = [{"id": "b", "results": [{"val_bce": 2.0}]}, {"id": "a", "results": [{"val_bce": 1.0}, {}]}]
    spans = [("a", 0.0, 1.0), ("b", 1.5, 2.0), ("a", 2.5, 3.0)]  # a ran, b ran, a was retried
    assert [c[:1] for c in work_order(trials, spans, "val_bce")] == [[1.0], [2.0]]
    assert not overlapped(spans) and overlapped([("a", 0.0, 2.0), ("b", 1.0, 3.0)])


def test_trainer_vs_bare_times_every_loop_on_as_many_images():
    """The smoke run of the docstring: this checkout's Trainer, the bare loop and a baseline revision (HEAD, in
    a git worktree), side by side on one table row."""
    out = subprocess.run([sys.executable, str(REPO / "bench" / "trainer_vs_bare.py"), "--models", "conv",
                          "--baseline", "HEAD", "--images", "600", "--epochs", "1", "--warmup", "0", "--wait-idle", "0",
                          "--min-cpu-use", "0", "--data-root", str(DATA_ROOT)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "600 training images" in out.stdout and "aetune / HEAD" in out.stdout
    row = next(line for line in out.stdout.splitlines() if line.startswith("| conv [16, 8, 8]"))
    assert row.split(" | ")[1] == "4,385"  # the trainable parameters of every loop's model
