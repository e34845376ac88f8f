"""A grid's ``attention_recipe`` (the attention warm-up of attnyolo.finetune.recipe.Recipe): checked before anything
trains, stored only when set (older grids resume unchanged), and handed to every run, the control's included."""

from __future__ import annotations

import pytest

from attnyolo.data.base_checkpoint import base_path
from attnyolo.experiments.grid import GridError, attention_recipe, resolve
from attnyolo.finetune.recipe import Recipe


def _grid(default_data, **extra):
    return {"data": str(default_data), "weights": str(base_path()), "attention": ["se"], "recipe": {"epochs": 2},
            **extra}  # fmt: skip


def test_attention_recipe_is_stored_only_when_set_and_gives_the_recipe(default_data):
    plain = resolve(_grid(default_data), check=False)
    assert "attention_recipe" not in plain.config() and attention_recipe(plain) is None
    options = {"warmup_epochs": 1, "new_lr_scale": 100, "gamma_lr_scale": 100}
    grid = resolve(_grid(default_data, attention_recipe=options), check=False)
    assert grid.config()["attention_recipe"] == options
    assert attention_recipe(grid) == Recipe(warmup_epochs=1, new_lr_scale=100.0, gamma_lr_scale=100.0)
    assert resolve(grid.config(), check=False).config() == grid.config()  # what grid.yaml holds resolves again


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"warmup_epochs": 3}, "warmup_epochs=3 is longer than the run (epochs=2)"),
        ({"new_lr_scale": -1}, "new_lr_scale must be a learning-rate factor > 0"),
        ({"gamma_lr_scale": 0}, "gamma_lr_scale must be a learning-rate factor > 0"),
        ({"warmup_epochs": 1.5}, "warmup_epochs must be a whole number"),
        ({"warm_up": 1}, "unknown keys ['warm_up'] (allowed: warmup_epochs, new_lr_scale, gamma_lr_scale)"),
        ([1], "attention_recipe must be default or none or a mapping"),
        ("fast", "attention_recipe must be default or none or a mapping such as {warmup_epochs: 1, new_lr_scale: 100}, got 'fast'"),
    ],
)
def test_bad_attention_recipe_is_one_line_naming_the_value(default_data, value, message):
    with pytest.raises(GridError) as e:
        resolve(_grid(default_data, attention_recipe=value), check=False)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_attention_recipe_needs_a_base_checkpoint(default_data):
    grid = {
        "data": str(default_data),
        "model": "yolov8n.yaml",
        "attention": ["se"],
        "attention_recipe": {"warmup_epochs": 1},
    }
    with pytest.raises(GridError, match="attention_recipe needs weights"):
        resolve(grid, check=False)


@pytest.mark.slow
def test_a_grid_run_with_the_warmup_trains_only_the_new_tensors_in_epoch_one(default_data, tmp_path):
    """Through the runner (the same start path and callbacks as finetune): a one-epoch run that is all warm-up leaves
    every transferred tensor where the base had it (BatchNorm statistics included), while gamma and the attention's
    own tensors moved."""
    import csv

    import torch

    from attnyolo.checkpoints import load_checkpoint
    from attnyolo.experiments.runner import RUNS, RunTask, run_one
    from attnyolo.models import checkpoint_model

    grid = resolve(
        _grid(default_data, attention_recipe={"warmup_epochs": 1, "new_lr_scale": 100, "gamma_lr_scale": 100},
              recipe={"epochs": 1, "imgsz": 64, "batch": 16, "workers": 0, "device": "cpu", "plots": False,
                      "fraction": 0.25, "optimizer": "AdamW", "lr0": 1e-4, "warmup_epochs": 0}),
        check=False,
    )  # fmt: skip
    variant = grid.variants[1]
    run_id = variant.label + "-s0"
    run_one(RunTask(str(tmp_path), run_id, grid.config(), variant.as_dict(), 0, 1).__dict__)
    weights = tmp_path / RUNS / run_id / "weights"
    start = checkpoint_model(load_checkpoint(weights / "start.pt")).float().state_dict()
    last = checkpoint_model(load_checkpoint(weights / "last.pt")).float().state_dict()  # the EMA, stored in fp16
    new = {k for k in start if k.startswith(("model.16.", "model.20.", "model.24."))}  # the three inserted SE rows
    assert new and all(k in last for k in start)
    for k in set(start) - new:  # transferred: unchanged up to the fp16 rounding of the stored EMA
        assert torch.allclose(last[k], start[k], rtol=1e-3, atol=1e-3), k
    moved = [k for k in new if start[k].is_floating_point() and (last[k] - start[k]).abs().max() > 1e-2]
    assert any(k.endswith(".gamma") for k in moved) and any(not k.endswith(".gamma") for k in moved), moved
    with open(weights.parent / "attnyolo_gamma.csv") as f:
        gammas = [float(r["gamma"]) for r in csv.DictReader(f) if r["epoch"] == "1"]
    assert len(gammas) == 3 and max(abs(g) for g in gammas) > 1e-2
