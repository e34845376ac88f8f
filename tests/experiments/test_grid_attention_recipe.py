"""A grid's ``attention_recipe`` (the attention warm-up of attnyolo.finetune.recipe.Recipe): checked before anything
trains, stored only when set (older grids resume unchanged), and handed to every run, the control's included."""

from __future__ import annotations

import pytest

from attnyolo.data.base_checkpoint import base_path
from attnyolo.experiments.driver import with_attention_recipe
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
        (
            {"warm_up": 1},
            "unknown keys ['warm_up'] (allowed: warmup_epochs, new_lr_scale, gamma_lr_scale, new_max_lr, gamma_max_lr)",
        ),
        ([1], "attention_recipe must be default or none or a mapping"),
        (
            "fast",
            "attention_recipe must be default or none or a mapping such as "
            "{warmup_epochs: 1, new_lr_scale: 100}, got 'fast'",
        ),
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


# ------------------------------------------------------------------------- the default, the opt-out, old folders

DEFAULT_2_EPOCHS = {"warmup_epochs": 1, "new_lr_scale": 100.0, "gamma_lr_scale": 300.0, "new_max_lr": 0.01,
                    "gamma_max_lr": 0.03}  # fmt: skip


def test_a_new_fine_tuning_grid_gets_the_default_recipe_written_out(default_data, tmp_path):
    new = tmp_path / "new"
    grid = resolve(with_attention_recipe(_grid(default_data), new), check=False)
    assert grid.config()["attention_recipe"] == DEFAULT_2_EPOCHS
    short = resolve(with_attention_recipe(_grid(default_data, recipe={"epochs": 1}), new), check=False)
    assert short.config()["attention_recipe"] == {
        "new_lr_scale": 100.0,
        "gamma_lr_scale": 300.0,
        "new_max_lr": 0.01,
        "gamma_max_lr": 0.03,
    }  # no warm-up
    assert resolve(_grid(default_data, attention_recipe="default"), check=False).config() == grid.config()
    for off in ("none", None, {}):  # the opt-out: nothing stored, no recipe
        opted_out = resolve(with_attention_recipe(_grid(default_data, attention_recipe=off), new), check=False)
        assert "attention_recipe" not in opted_out.config() and attention_recipe(opted_out) is None
    scratch = {"data": str(default_data), "model": "yolov8n.yaml", "attention": ["se"], "recipe": {"epochs": 2}}
    assert "attention_recipe" not in resolve(with_attention_recipe(scratch, new), check=False).config()


def test_the_default_and_freeze_epochs_are_one_frozen_phase(default_data, tmp_path):
    grid = resolve(with_attention_recipe(_grid(default_data, freeze_epochs=1), tmp_path), check=False)
    assert grid.config()["attention_recipe"] == {
        "new_lr_scale": 100.0,
        "gamma_lr_scale": 300.0,
        "new_max_lr": 0.01,
        "gamma_max_lr": 0.03,
    }
    with pytest.raises(GridError, match=r"^attention_recipe: warmup_epochs=1 and freeze_epochs=1 are two frozen"):
        resolve(_grid(default_data, freeze_epochs=1, attention_recipe={"warmup_epochs": 1}), check=False)


def _finished_folder(folder, config):
    """A grid folder as ``ablate`` leaves it when every run is done, with ``config`` stored (database + grid.yaml)."""
    import yaml

    from attnyolo.experiments.runner import git_rev, machine, versions
    from attnyolo.experiments.store import GRID_YAML, ResultsStore

    store = ResultsStore.create(folder, config, machine(), versions(), git_rev())
    (folder / GRID_YAML).write_text(yaml.safe_dump(config, sort_keys=False))
    runs = resolve(config, check=False).runs()
    store.add_runs([{"run_id": rid, "variant": v.label, "attention": v.attention, "placement": v.where,
                     "hparams": v.hparams, "seed": s, "is_baseline": v.is_baseline} for rid, v, s in runs])  # fmt: skip
    for rid, _, _ in runs:
        store.mark_running(rid)
        store.mark_done(rid, {"map50": 0.5})
    store.close()


def test_a_folder_stored_before_the_default_resumes_without_a_recipe(default_data, tmp_path):
    """grid.yaml as attnyolo wrote it before the default existed (no attention_recipe key): resuming it, from the
    folder or with the same grid again, keeps the schedule its runs had (no recipe), not today's default."""
    from attnyolo.experiments import ablate
    from attnyolo.experiments.store import ResultsStore

    old = {"data": str(default_data.resolve()), "model": None, "weights": str(base_path()),
           "weights_sha256": resolve(_grid(default_data), check=False).weights_sha256, "recipe": {"epochs": 2},
           "seeds": [0], "variants": [{"attention": None, "where": None, "hparams": {}},
                                      {"attention": "se", "where": "neck", "hparams": {}}],
           "identity_start": True, "trust": False}  # fmt: skip
    folder = tmp_path / "old"
    _finished_folder(folder, old)
    given = dict(_grid(default_data))  # the command that made it, run again

    assert with_attention_recipe(given, folder)["attention_recipe"] == "none"
    assert attention_recipe(resolve(with_attention_recipe(given, folder), check=False)) is None
    for store in (ablate(out=folder), ablate(given, out=folder)):  # nothing refused, nothing left to run
        assert store.grid()["config"] == old and {r["state"] for r in store.runs(None)} == {"done"}
        store.close()
    with pytest.raises(GridError, match=r"holds another grid \(attention_recipe: stored and given differ\)"):
        ablate({**given, "attention_recipe": "default"}, out=folder)
    with ResultsStore(folder) as reader:
        assert reader.grid()["config"] == old  # untouched by the refusal


def test_a_folder_stored_with_a_recipe_resumes_with_it(default_data, tmp_path):
    options = {"warmup_epochs": 1, "new_lr_scale": 100, "gamma_lr_scale": 100}  # the demo's earlier recipe
    config = resolve(_grid(default_data, attention_recipe=options), check=False).config()
    folder = tmp_path / "g"
    _finished_folder(folder, config)
    assert with_attention_recipe(_grid(default_data), folder)["attention_recipe"] == options
