"""γ gets an optimiser group of its own (no weight decay, its own learning rate), built inside Ultralytics'."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import attnyolo
from attnyolo.finetune import FinetuneError, GammaOptimiser
from attnyolo.graph.ultralytics import AttentionLayer


def test_gamma_moves_to_its_own_group_without_decay():
    from ultralytics.engine.trainer import BaseTrainer

    cfg, _ = attnyolo.insert("yolov8n.yaml", "se", where="neck")
    model = attnyolo.build(cfg, nc=3)
    fake = SimpleNamespace(args=SimpleNamespace(lr0=1e-3, warmup_bias_lr=0.1, optimizer="AdamW"), data={"nc": 3})
    trainer = SimpleNamespace(model=model, build_optimizer=lambda **kw: BaseTrainer.build_optimizer(fake, **kw))
    GammaOptimiser(weight_decay=0.0, lr_scale=10.0).on_pretrain_routine_start(trainer)
    opt = trainer.build_optimizer(model=model, name="AdamW", lr=1e-3, momentum=0.9, decay=5e-4)

    gammas = {id(m.gamma) for m in model.modules() if isinstance(m, AttentionLayer) and m.gamma is not None}
    assert len(gammas) == 3  # one per neck output
    groups = {g["param_group"]: g for g in opt.param_groups}
    assert {id(p) for p in groups["gamma"]["params"]} == gammas
    assert groups["gamma"]["weight_decay"] == 0.0 and groups["gamma"]["lr"] == pytest.approx(1e-2)
    assert groups["weight"]["weight_decay"] == pytest.approx(5e-4)  # the other weights keep theirs
    others = [id(p) for g in opt.param_groups if g["param_group"] != "gamma" for p in g["params"]]
    assert not gammas & set(others)
    assert len(others) + len(gammas) == len(list(model.parameters()))  # nothing lost, nothing twice


def test_model_without_gamma_keeps_ultralytics_groups():
    from ultralytics.engine.trainer import BaseTrainer

    model = attnyolo.build("yolov8n.yaml", nc=3)
    fake = SimpleNamespace(args=SimpleNamespace(lr0=1e-3, warmup_bias_lr=0.1, optimizer="SGD"), data={"nc": 3})
    opt = BaseTrainer.build_optimizer(fake, model=model, name="SGD", lr=1e-3, momentum=0.9, decay=5e-4)
    before = [len(g["params"]) for g in opt.param_groups]
    GammaOptimiser().regroup(opt, model)
    assert [len(g["params"]) for g in opt.param_groups] == before


def test_bad_gamma_settings():
    with pytest.raises(FinetuneError, match="lr_scale"):
        GammaOptimiser(lr_scale=0)
