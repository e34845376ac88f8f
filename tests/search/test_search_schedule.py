"""The halving schedule: which candidates reach which rung under Ray Tune's ASHA, on a stand-in trainable whose
scores the test sets, with the expected rungs worked out by hand from ASHA's rule (a candidate goes on at a rung
when its score is at least the 1 - 1/eta quantile of the scores recorded there before it; ties go on)."""

from __future__ import annotations

import time

import pytest
from fake_trainable import fake_trainable

from attnyolo.search.candidates import SearchError
from attnyolo.search.rungs import run_rungs
from attnyolo.search.schedule import plan, planned_epochs
from attnyolo.search.store import SearchStore

pytestmark = pytest.mark.slow  # starts Ray (trains nothing: the trainable is a stand-in)


def run_fake(folder, scores: dict[str, float], schedule, sleep: float = 0.0, **kwargs) -> dict[str, list[int]]:
    """Run the stand-in over ``scores`` (in their order); return ``label -> epochs of the rungs it reached``."""
    store = SearchStore.create(folder, {"test": True})
    store.add_candidates(
        [{"label": k, "position": i, "attention": k, "place": "neck", "params": 0, "added_params": 0, "gflops": 0.0,
          "gflops_ratio": 1.0} for i, k in enumerate(scores)]
    )  # fmt: skip
    config = {"search_dir": str(folder), "scores": scores, "max_epochs": schedule.max_epochs, "sleep": sleep}
    run_rungs(store, list(scores), schedule, fake_trainable, config, **kwargs)
    reached: dict[str, list[int]] = {k: [] for k in scores}
    for row in store.rungs():
        reached[row["label"]].append(row["epoch"])
    store.close()
    return reached


def test_halving_with_eta_2_keeps_ties_at_the_cutoff(local_ray, tmp_path):
    # rungs 1, 2, 4. In order: a is first (nothing recorded: goes on to the end); b ties a at rung 1 (cutoff = the
    # median of {0.9} = 0.9) and at rung 2, so it goes on; c (0.7) and d (0.8) are below the rung-1 medians 0.9
    # and 0.9 of {0.9, 0.9(, 0.7)}; e (0.95) beats the rung-1 median of {.9, .9, .7, .8} = 0.85 and the rung-2
    # median of {.9, .9}; f (0.6) stops at rung 1.
    scores = {"a": 0.9, "b": 0.9, "c": 0.7, "d": 0.8, "e": 0.95, "f": 0.6}
    schedule = plan(len(scores), grace=1, eta=2, rung_count=3)
    assert schedule.rungs == (1, 2, 4)
    reached = run_fake(tmp_path / "s", scores, schedule)
    assert reached == {"a": [1, 2, 4], "b": [1, 2, 4], "c": [1], "d": [1], "e": [1, 2, 4], "f": [1]}
    trained = (tmp_path / "s" / "trained.log").read_text().split("\n")
    # a stopped candidate trained only up to its rung: 3 x 4 + 3 x 1 epochs, none twice
    assert len([t for t in trained if t]) == 15 and len(set(trained)) == len(trained)


def test_halving_with_eta_3(local_ray, tmp_path):
    # rungs 1, 3. b: 0.4 < the 2/3 quantile of {0.5} = 0.5; c: 0.6 >= that of {0.5, 0.4} = 0.4667, and at rung 3
    # 0.6 >= 0.5 (a's); d: 0.3 < that of {0.5, 0.4, 0.6} = 0.5333
    scores = {"a": 0.5, "b": 0.4, "c": 0.6, "d": 0.3}
    schedule = plan(len(scores), grace=1, eta=3, rung_count=2)
    assert schedule.rungs == (1, 3)
    assert run_fake(tmp_path / "s", scores, schedule) == {"a": [1, 3], "b": [1], "c": [1, 3], "d": [1]}


def test_the_epoch_budget_lets_no_candidate_past_its_first_rung(local_ray, tmp_path):
    # 4 candidates, rungs 1, 2: the plan is 4 x 1 + 2 x 1 = 6 epochs; a budget of 5 cannot hold two rungs, so
    # plan() gives one
    assert plan(4, grace=1, eta=2, budget_epochs=5).rungs == (1,)
    assert plan(4, grace=1, eta=2, budget_epochs=6).rungs == (1, 2)
    # rising scores: without a budget ASHA lets each go on (each beats the median of those before it) ...
    scores = {"a": 0.6, "b": 0.7, "c": 0.8, "d": 0.9}
    schedule = plan(4, grace=1, eta=2, rung_count=2)
    assert run_fake(tmp_path / "free", scores, schedule) == {k: [1, 2] for k in scores}
    # ... with a budget of 3 epochs, a takes 2 and b's first reaches 3: b, c and d get their first rung only
    reached = run_fake(tmp_path / "budget", scores, schedule, budget_epochs=3)
    assert reached == {"a": [1, 2], "b": [1], "c": [1], "d": [1]}
    assert len((tmp_path / "budget" / "trained.log").read_text().split()) == 2 * 5  # 5 epochs trained


def test_the_wall_clock_budget_ends_the_rungs_early_and_keeps_what_was_scored(local_ray, tmp_path):
    # 3 candidates that tie (all go on) over rungs 1, 2, 4: 12 epochs of 1 s each; a 4 s budget (Ray Tune's
    # time_budget_s) ends the session long before, without an error, and every score reported by then is recorded
    scores = {"a": 0.5, "b": 0.5, "c": 0.5}
    schedule = plan(3, grace=1, eta=2, rung_count=3)
    started = time.monotonic()
    reached = run_fake(tmp_path / "s", scores, schedule, budget_seconds=4, sleep=1.0)
    assert time.monotonic() - started < 60
    log = tmp_path / "s" / "trained.log"
    trained = log.read_text().splitlines() if log.is_file() else []
    assert len(trained) < 12  # the whole plan would train 12 epochs
    for label, epochs in reached.items():  # a recorded rung was trained (up to its epoch) before the budget ran out
        assert all(f"{label} {e}" in trained for e in epochs)


def test_two_candidates_at_once_score_every_first_rung_and_train_no_epoch_twice(local_ray, tmp_path):
    # concurrency 2 on the 2-CPU instance: which candidates go on depends on arrival order (ASHA is asynchronous),
    # but every candidate gets its first rung, a rung is recorded only for an epoch trained, and none twice
    scores = {"a": 0.6, "b": 0.9, "c": 0.7, "d": 0.8}
    schedule = plan(4, grace=1, eta=2, rung_count=2)
    reached = run_fake(tmp_path / "s", scores, schedule, sleep=0.5, concurrency=2)
    trained = (tmp_path / "s" / "trained.log").read_text().splitlines()
    assert len(trained) == len(set(trained))
    assert all(epochs[:1] == [1] for epochs in reached.values())
    assert all(f"{label} {e}" in trained for label, epochs in reached.items() for e in epochs)
    assert 4 < sum(len(e) for e in reached.values()) < 8  # someone went on (the first arrival always does), not all


def test_planned_epochs_by_hand():
    # 12 candidates, eta 3, rungs 1, 3, 9: 12 x 1 + 4 x 2 + 2 x 6 = 32 epochs
    assert planned_epochs(12, (1, 3, 9), 3) == 32
    assert plan(12, grace=1, eta=3, budget_epochs=32).rungs == (1, 3, 9)
    assert plan(12, grace=1, eta=3, budget_epochs=31).rungs == (1, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget_epochs": 11}, "a budget of 11 epochs is too small for one rung: 12 candidates x 1 epoch(s) need 12"),
        ({"grace": 0}, "grace (epochs of the first rung) must be an integer >= 1, got 0"),
        ({"eta": 1}, "eta must be an integer >= 2, got 1"),
        ({"rung_count": 3, "budget_epochs": 20}, "3 rungs [1, 3, 9] need 32 epochs over 12 candidates"),
    ],
)
def test_bad_schedules_are_one_line(kwargs, message):
    with pytest.raises(SearchError) as e:
        plan(12, **kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)
