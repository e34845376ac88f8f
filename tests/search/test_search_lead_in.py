"""The lead-in of a search: the epochs every run trains before its rungs count (the attention warm-up of the default
recipe, or ``freeze_epochs``). During it only the new tensors train on a frozen base, so the rungs count after it:
the runs are one lead-in longer, ASHA sees epoch ``e - lead_in``, and the lead-in's own epochs are not reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnyolo.cli.app import main
from attnyolo.experiments.grid import GridError
from attnyolo.search import driver
from attnyolo.search import trainable as search_trainable

BASE = Path(__file__).resolve().parents[2] / "attnyolo" / "data" / "base_yolov8n_bccd.safetensors"


def planned(default_data, **kwargs):
    args = {"attention": "se", "where": "neck", "max_params": None, "max_gflops_ratio": None,
            "max_latency_ratio": None, "top": 1, "seed": 0, "budget_hours": None, "recipe": {"imgsz": 64},
            "data": str(default_data), "weights": str(BASE), "model": None, "trust": False, "identity_start": True,
            "grace": 1, "eta": 2, "rungs": 2, "budget_epochs": None, "seeds": 2, "freeze_epochs": 0,
            "attention_recipe": None, **kwargs}  # fmt: skip
    _, _, schedule, grid, _ = driver._plan_search(args)
    return schedule, grid


@pytest.mark.parametrize(
    ("kwargs", "lead"),
    [
        ({}, 1),  # the default recipe's one-epoch attention warm-up
        ({"attention_recipe": {"warmup_epochs": 2, "new_lr_scale": 100}}, 2),
        ({"attention_recipe": "none", "freeze_epochs": 3}, 3),
    ],
)
def test_every_run_is_the_lead_in_plus_the_last_rung(default_data, kwargs, lead):
    schedule, grid = planned(default_data, **kwargs)
    assert schedule.rungs == (1, 2)
    assert schedule.lead_in == lead
    # the grid's own recipe agrees: the warm-up it resolved (or the freezing) is the lead-in
    assert int(grid.attention_recipe.get("warmup_epochs") or 0) + grid.freeze_epochs == lead
    assert grid.recipe["epochs"] == schedule.run_epochs == 2 + lead  # the confirmation trains as long as the runs


def test_a_search_from_a_model_yaml_has_no_lead_in(default_data):
    schedule, grid = planned(default_data, weights=None, model="yolov8n.yaml")
    assert schedule.lead_in == 0 and grid.recipe["epochs"] == 2 and grid.attention_recipe == {}


def test_a_bad_recipe_is_named_by_the_grid_in_one_line(default_data):
    with pytest.raises(GridError) as e:
        planned(default_data, attention_recipe={"warmup": 1})
    assert str(e.value).startswith("attention_recipe: unknown keys ['warmup']") and "\n" not in str(e.value)


def test_the_lead_in_epochs_are_not_reported_and_the_rest_count_after_it(monkeypatch):
    reports = []
    monkeypatch.setattr(search_trainable.tune, "report", reports.append)
    for epoch, score in [(1, 0.40), (2, 0.41), (3, 0.42)]:
        search_trainable.report(epoch, score, 0.7, replayed=False, lead_in=1)
    assert [(r["epoch"], r["map50_95"]) for r in reports] == [(1, 0.41), (2, 0.42)]
    reports.clear()
    search_trainable.report(1, float("nan"), None, replayed=True)  # no lead-in; a NaN score ranks last
    assert reports == [{"epoch": 1, "map50_95": 0.0, "map50": None, "replayed": True}]


def test_the_cli_takes_the_same_recipe_flags_as_ablate(default_data, tmp_path, capsys):
    # a warm-up as long as the whole last run is refused by the grid, before anything is written
    argv = ["search", "-a", "se", "--weights", str(BASE), "--data", str(default_data), "--rungs", "1",
            "--attention-recipe", "none", "--attention-warmup", "1", "-o", str(tmp_path / "s"), "imgsz=64"]  # fmt: skip
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "--attention-recipe none takes no --attention-warmup" in err
    assert not (tmp_path / "s").exists()
