"""Fine-tune recipes under which attention engages (attnyolo.finetune.recipe): the new tensors' optimiser group,
the attention warm-up (frozen transferred tensors, BatchNorm statistics kept, a step per batch), bad input,
identity start."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from model_helpers import QUIET_CPU, state
from ultralytics import YOLO
from ultralytics.engine.trainer import BaseTrainer

import attnyolo
from attnyolo.checkpoints import save_ultralytics_checkpoint
from attnyolo.data.base_checkpoint import base_path, load_base
from attnyolo.finetune import GammaOptimiser
from attnyolo.finetune.recipe import NEW_GROUP, NewTensorOptimiser, Recipe, RecipeError
from attnyolo.graph.ultralytics import AttentionLayer

# a tiny run: 10 train images at 64 px, batches of 4, an optimiser step every 4 batches outside the warm-up
TINY = dict(imgsz=64, fraction=0.05, batch=4, nbs=16, warmup_epochs=0, optimizer="AdamW", lr0=1e-4,
            mosaic=0.0, val=False, exist_ok=True, **QUIET_CPU)  # fmt: skip


def _attention_keys(model: torch.nn.Module) -> set[str]:
    """State-dict keys under an AttentionLayer (the new tensors, found by module type, not by the transfer)."""
    prefixes = [f"{n}." for n, m in model.named_modules() if isinstance(m, AttentionLayer)]
    return {k for k in model.state_dict() if any(k.startswith(p) for p in prefixes)}


def test_new_tensors_get_their_own_group_and_gamma_its_own_rate():
    cfg, _ = attnyolo.insert("yolov8n.yaml", "cbam", where="neck")
    model = attnyolo.build(cfg, nc=3)
    new_keys = _attention_keys(model)
    transferred = set(model.state_dict()) - new_keys
    fake = SimpleNamespace(args=SimpleNamespace(lr0=1e-3, warmup_bias_lr=0.1, optimizer="AdamW"), data={"nc": 3})
    trainer = SimpleNamespace(
        model=model, args=fake.args, build_optimizer=lambda **kw: BaseTrainer.build_optimizer(fake, **kw)
    )
    GammaOptimiser().on_pretrain_routine_start(trainer)  # as finetune registers them: gamma's group first
    NewTensorOptimiser(transferred, lr_scale=100, gamma_lr_scale=1000).on_pretrain_routine_start(trainer)
    opt = trainer.build_optimizer(model=model, name="AdamW", lr=1e-3, momentum=0.9, decay=5e-4)

    groups = {g["param_group"]: g for g in opt.param_groups}
    params = dict(model.named_parameters())
    want_new = {id(p) for k, p in params.items() if k in new_keys and not k.endswith(".gamma")}
    assert len(want_new) > 0 and {id(p) for p in groups[NEW_GROUP]["params"]} == want_new
    assert groups[NEW_GROUP]["lr"] == pytest.approx(0.1) and groups[NEW_GROUP]["weight_decay"] == 0.0
    assert groups["gamma"]["lr"] == pytest.approx(1.0) and len(groups["gamma"]["params"]) == 3
    assert groups["weight"]["lr"] == pytest.approx(1e-3)  # the transferred weights keep the base's rate
    listed = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(listed) == sorted(id(p) for p in params.values())  # nothing lost, nothing twice


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"new_lr_scale": -10}, "new_lr_scale must be a learning-rate factor > 0.*-10"),
        ({"gamma_lr_scale": 0}, "gamma_lr_scale must be a learning-rate factor > 0.*got 0"),
        ({"new_lr_scale": "10"}, "new_lr_scale .*'10'"),
        ({"warmup_epochs": -1}, "warmup_epochs must be a whole number of epochs >= 0, got -1"),
        ({"warmup_epochs": 1.5}, "warmup_epochs .* got 1.5"),
    ],
)
def test_bad_recipe_options_are_one_line_naming_the_value(kwargs, message):
    with pytest.raises(RecipeError, match=message) as e:
        Recipe(**kwargs)
    assert "\n" not in str(e.value)


def test_a_warmup_longer_than_the_run_is_refused_before_training(default_data, tmp_path):
    with pytest.raises(RecipeError, match=r"warmup_epochs=3 is longer than the run \(epochs=2\)"):
        attnyolo.finetune(
            base_path(), "se", "neck", default_data, recipe=Recipe(warmup_epochs=3), print_report=False,
            epochs=2, project=str(tmp_path), name="x", **TINY,
        )  # fmt: skip
    assert not (tmp_path / "x").exists()  # refused before Ultralytics made a run folder


@pytest.mark.slow
def test_warmup_freezes_every_transferred_tensor_and_bn_statistics_then_trains_jointly(default_data, tmp_path):
    base = load_base()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    seen: dict = {"accumulate": {}}

    def at_start(trainer):
        net = trainer.model
        seen["start"] = state(net)
        net.eval()
        with torch.no_grad():  # both here: the trainer changes torch's thread count, hence the rounding of convs
            seen["identity"] = torch.equal(net(x)[0], base(x)[0])  # step 0: exactly the base's function
        net.train()

    def at_batch(trainer):
        seen["accumulate"].setdefault(trainer.epoch, set()).add(trainer.accumulate)

    def at_epoch_end(trainer):
        seen[trainer.epoch] = state(trainer.model)

    recipe = Recipe(warmup_epochs=1, new_lr_scale=100, gamma_lr_scale=1000)
    result = attnyolo.finetune(
        base_path(), "cbam", "neck", default_data, recipe=recipe, print_report=False,
        callbacks={"on_train_start": at_start, "on_train_batch_end": at_batch, "on_train_epoch_end": at_epoch_end},
        epochs=2, project=str(tmp_path), name="warm", **TINY,
    )  # fmt: skip
    transferred = {dst for _, dst in result.report.transferred}
    start, warm, joint = seen["start"], seen[0], seen[1]
    assert len(transferred) == 355 and seen["identity"]
    bn_stats = [k for k in transferred if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(bn_stats) > 100
    assert [k for k in transferred if not torch.equal(warm[k], start[k])] == []  # weights and BN statistics
    new = set(start) - transferred
    assert all(not torch.equal(warm[k], start[k]) for k in new if k.endswith("gamma"))
    assert sum(not torch.equal(warm[k], start[k]) for k in new) > len(new) // 2  # the attention trained
    assert sum(not torch.equal(joint[k], warm[k]) for k in transferred) > 100  # then the base trains too
    assert seen["accumulate"] == {0: {1}, 1: {4}}  # a step per batch in the warm-up, nbs/batch after


@pytest.mark.slow
def test_the_control_goes_through_the_warmup_unchanged(default_data, tmp_path):
    base = load_base()
    start = save_ultralytics_checkpoint(base, tmp_path / "control.pt", {}, data=default_data)
    seen = {}
    yolo = YOLO(str(start))
    yolo.add_callback("on_train_start", lambda t: seen.setdefault("start", state(t.model)))
    yolo.add_callback("on_train_epoch_end", lambda t: seen.setdefault(t.epoch, state(t.model)))
    Recipe(warmup_epochs=1, new_lr_scale=100).install(yolo, set(base.state_dict()), epochs=2)
    yolo.train(data=str(default_data), epochs=2, project=str(tmp_path), name="control", **TINY)
    assert [k for k in seen["start"] if not torch.equal(seen[0][k], seen["start"][k])] == []  # nothing moved
    assert sum(not torch.equal(seen[1][k], seen[0][k]) for k in seen[0]) > 100  # the joint epoch trains
