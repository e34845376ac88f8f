"""The default attention recipe of ``attnyolo finetune`` / ``attnyolo.finetune()`` (attnyolo.finetune.recipe):
what it is for short and long runs, the opt-out, the CLI knobs, bad input in one line, and rates relative to the
learning rate Ultralytics actually built the optimiser with."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
from ultralytics.engine.trainer import BaseTrainer

import attnyolo
from attnyolo.cli import main
from attnyolo.data.base_checkpoint import base_path
from attnyolo.finetune import GammaOptimiser
from attnyolo.finetune.recipe import (
    NEW_GROUP,
    NewTensorOptimiser,
    Recipe,
    RecipeError,
    default_recipe,
    recipe_from,
    recipe_with,
    scaled_lr,
)
from attnyolo.graph.adapter import AttentionLayer

finetune_module = importlib.import_module("attnyolo.finetune")  # the package: attnyolo.finetune is the function


def test_the_default_warms_up_one_epoch_only_when_the_run_has_room_for_it():
    assert default_recipe(2) == Recipe(
        warmup_epochs=1, new_lr_scale=100.0, gamma_lr_scale=300.0, new_max_lr=0.01, gamma_max_lr=0.03
    )
    assert default_recipe(30) == default_recipe(None) == default_recipe(2)  # None: Ultralytics' 100 epochs
    # a 1-epoch run keeps training the base (no warm-up), with the same learning-rate factors
    assert default_recipe(1) == Recipe(
        warmup_epochs=0, new_lr_scale=100.0, gamma_lr_scale=300.0, new_max_lr=0.01, gamma_max_lr=0.03
    )
    # the user's own frozen phase replaces the warm-up: one frozen phase at a time
    assert default_recipe(5, freeze_epochs=2).warmup_epochs == 0


def test_recipe_values_none_default_mapping_and_recipe():
    assert recipe_from(None, 2) is None and recipe_from("none", 2) is None and recipe_from("None", 2) is None
    assert recipe_from("default", 1) == default_recipe(1)
    assert recipe_from({"warmup_epochs": 2}, 3) == Recipe(warmup_epochs=2)
    assert recipe_from(Recipe(new_lr_scale=5), 1) == Recipe(new_lr_scale=5)
    assert Recipe(**default_recipe(2).as_dict()) == default_recipe(2)  # what a grid stores gives it back
    assert default_recipe(1).as_dict() == {
        "new_lr_scale": 100.0,
        "gamma_lr_scale": 300.0,
        "new_max_lr": 0.01,
        "gamma_max_lr": 0.03,
    }


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: recipe_from("fast", 2), "attention recipe must be default or none, a mapping of warmup_epochs"),
        (lambda: recipe_from("fast", 2), "got 'fast'"),
        (lambda: recipe_from({"warm_up": 1}, 2), "unknown recipe keys ['warm_up'] (allowed: warmup_epochs,"),
        (lambda: recipe_from(Recipe(warmup_epochs=3), 2), "warmup_epochs=3 is longer than the run (epochs=2)"),
        (lambda: recipe_from({"new_lr_scale": -1}, 2), "new_lr_scale must be a learning-rate factor > 0"),
        (lambda: recipe_from(Recipe(warmup_epochs=1), 3, freeze_epochs=1), "two frozen phases; give one of them"),
        (lambda: recipe_with("none", 2, new_lr_scale=5), "--attention-recipe none takes no --new-lr-scale"),
        (lambda: recipe_with("default", 1, warmup_epochs=2), "warmup_epochs=2 is longer than the run (epochs=1)"),
        (lambda: recipe_with("default", 2, gamma_lr_scale=-3), "gamma_lr_scale must be a learning-rate factor > 0"),
    ],
)
def test_bad_recipe_input_is_one_line_naming_the_value(call, message):
    with pytest.raises(RecipeError) as e:
        call()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_cli_knobs_replace_the_defaults_knobs_only():
    assert recipe_with("default", 4, warmup_epochs=2) == Recipe(2, 100.0, 300.0, 0.01, 0.03)
    assert recipe_with("default", 4, new_lr_scale=10, gamma_lr_scale=20) == Recipe(1, 10.0, 20.0, 0.01, 0.03)
    assert recipe_with("none", 4) is None and recipe_with("default", 4) == default_recipe(4)


def test_rates_follow_the_learning_rate_ultralytics_chose_for_optimizer_auto():
    """With ``optimizer=auto`` Ultralytics ignores lr0 and picks its own rate: the factors apply to that rate."""
    cfg, _ = attnyolo.insert("yolov8n.yaml", "se", where="neck")
    model = attnyolo.build(cfg, nc=3)
    new_keys = {k for k, _ in model.named_parameters() if any(
        k.startswith(f"{n}.") for n, m in model.named_modules() if isinstance(m, AttentionLayer))}  # fmt: skip
    fake = SimpleNamespace(args=SimpleNamespace(lr0=0.01, warmup_bias_lr=0.1, optimizer="auto"), data={"nc": 3})
    trainer = SimpleNamespace(
        model=model, args=fake.args, build_optimizer=lambda **kw: BaseTrainer.build_optimizer(fake, **kw)
    )
    GammaOptimiser().on_pretrain_routine_start(trainer)
    NewTensorOptimiser(set(model.state_dict()) - new_keys, 100, 300).on_pretrain_routine_start(trainer)
    opt = trainer.build_optimizer(model=model, name="auto", lr=0.01, momentum=0.9, decay=5e-4, iterations=100)
    groups = {g["param_group"]: g for g in opt.param_groups}
    chosen = groups["weight"]["lr"]
    assert chosen == pytest.approx(round(0.002 * 5 / (4 + 3), 6))  # Ultralytics' own choice for 3 classes
    assert groups[NEW_GROUP]["lr"] == pytest.approx(chosen * 100)
    assert groups["gamma"]["lr"] == pytest.approx(chosen * 300)


def test_the_limits_keep_the_measured_rates_when_lr0_is_larger():
    # at the measured lr0 1e-4 the factors decide (1e-2, 3e-2: the measured rates); above it, the limits do ...
    assert scaled_lr(1e-4, 100, 1e-2) == pytest.approx(1e-2) and scaled_lr(1e-4, 300, 3e-2) == pytest.approx(3e-2)
    assert scaled_lr(1e-5, 100, 1e-2) == pytest.approx(1e-3)
    assert scaled_lr(1.4e-3, 100, 1e-2) == 1e-2 and scaled_lr(1.4e-3, 300, 3e-2) == 3e-2
    # ... but never below the base's own rate (SGD at 0.05: the new tensors train at least as fast as the base)
    assert scaled_lr(0.05, 100, 1e-2) == 0.05 and scaled_lr(0.05, 100, None) == pytest.approx(5.0)


def test_the_default_limits_reach_the_optimiser_groups():
    cfg, _ = attnyolo.insert("yolov8n.yaml", "cbam", where="neck")
    model = attnyolo.build(cfg, nc=3)
    new_keys = {k for k, _ in model.named_parameters() if any(
        k.startswith(f"{n}.") for n, m in model.named_modules() if isinstance(m, AttentionLayer))}  # fmt: skip
    fake = SimpleNamespace(args=SimpleNamespace(lr0=0.01, warmup_bias_lr=0.1, optimizer="SGD"), data={"nc": 3})
    trainer = SimpleNamespace(
        model=model, args=fake.args, build_optimizer=lambda **kw: BaseTrainer.build_optimizer(fake, **kw)
    )
    recipe = default_recipe(10)
    GammaOptimiser().on_pretrain_routine_start(trainer)
    NewTensorOptimiser(
        set(model.state_dict()) - new_keys, recipe.new_lr_scale, recipe.gamma_lr_scale, recipe.new_max_lr,
        recipe.gamma_max_lr,
    ).on_pretrain_routine_start(trainer)  # fmt: skip
    opt = trainer.build_optimizer(model=model, name="SGD", lr=0.01, momentum=0.9, decay=5e-4)
    groups = {g["param_group"]: g for g in opt.param_groups}
    # Ultralytics' SGD default lr0 0.01: x 100 would be 1.0 and x 300 3.0; the limits give 0.01 and 0.03
    assert groups["weight"]["lr"] == 0.01 and groups[NEW_GROUP]["lr"] == 0.01 and groups["gamma"]["lr"] == 0.03


class _Stop(Exception):
    """Raised by the stand-in for the trainer's callbacks: the recipe it was given is all this test needs."""


@pytest.fixture
def recipes_given(monkeypatch):
    """The recipe ``finetune()`` hands to its run's callbacks, captured before anything trains."""
    given = []

    def capture(yolo, start, **kwargs):
        given.append(kwargs["recipe"])
        raise _Stop

    monkeypatch.setattr(finetune_module, "add_run_callbacks", capture)
    return given


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"epochs": 2}, Recipe(1, 100.0, 300.0, 0.01, 0.03)),
        ({"epochs": 1}, Recipe(0, 100.0, 300.0, 0.01, 0.03)),
        ({"epochs": 3, "freeze_epochs": 1}, Recipe(0, 100.0, 300.0, 0.01, 0.03)),
        ({"epochs": 2, "recipe": "none"}, None),
        ({"epochs": 2, "recipe": None}, None),
        ({"epochs": 3, "recipe": {"warmup_epochs": 2, "gamma_lr_scale": 50}}, Recipe(2, None, 50.0)),
    ],
)
def test_finetune_uses_the_default_recipe_unless_told_otherwise(default_data, recipes_given, kwargs, expected):
    with pytest.raises(_Stop):
        attnyolo.finetune(base_path(), "se", "neck", default_data, print_report=False, **kwargs)
    assert recipes_given == [expected]


def test_finetune_refuses_a_bad_recipe_before_building_anything(default_data, recipes_given):
    with pytest.raises(RecipeError, match=r"warmup_epochs=1 and freeze_epochs=2 are two frozen phases"):
        attnyolo.finetune(base_path(), "se", data=default_data, freeze_epochs=2, recipe=Recipe(1), epochs=3)
    assert recipes_given == []


def _cli(capsys, *args) -> tuple[int, str]:
    rc = main(["finetune", *map(str, args)])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], Recipe(1, 100.0, 300.0, 0.01, 0.03)),
        (["--attention-recipe", "none"], None),
        (["--attention-warmup", "2", "--gamma-lr-scale", "1000"], Recipe(2, 100.0, 1000.0, 0.01, 0.03)),
        (["--freeze-epochs", "1"], Recipe(0, 100.0, 300.0, 0.01, 0.03)),
    ],
)
def test_cli_recipe_flags_reach_finetune(capsys, default_data, recipes_given, flags, expected):
    with pytest.raises(_Stop):
        _cli(capsys, base_path(), "se", "--data", default_data, *flags, "epochs=3")
    assert recipes_given == [expected]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--attention-recipe", "fast"], "attention recipe must be default or none"),
        (["--attention-recipe", "none", "--new-lr-scale", "5"], "--attention-recipe none takes no --new-lr-scale"),
        (["--attention-warmup", "4"], "warmup_epochs=4 is longer than the run (epochs=3)"),
        (["--new-lr-scale", "-1"], "new_lr_scale must be a learning-rate factor > 0 (e.g. 10 or 100), got -1.0"),
        (["--attention-warmup", "1", "--freeze-epochs", "1"], "two frozen phases"),
    ],
)
def test_cli_bad_recipe_flags_are_one_line(capsys, default_data, recipes_given, flags, message):
    rc, err = _cli(capsys, base_path(), "se", "--data", default_data, *flags, "epochs=3")
    assert rc == 2 and err.startswith("attnyolo: error: ") and err.count("\n") == 1, err
    assert message in err and recipes_given == []
