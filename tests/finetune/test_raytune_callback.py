"""Ultralytics' own Ray Tune report is dropped from every attnyolo run (it warns outside a Tune session)."""

from __future__ import annotations

from types import SimpleNamespace

from torch import nn
from ultralytics.utils.callbacks import raytune

import attnyolo  # noqa: F401  (offline switches before Ultralytics)
from attnyolo.finetune import add_run_callbacks
from attnyolo.finetune.callbacks import drop_ultralytics_raytune


def mine(trainer):
    """A callback of somebody else's: kept."""


def test_drop_removes_only_ultralytics_raytune_report():
    trainer = SimpleNamespace(callbacks={"on_fit_epoch_end": [raytune.on_fit_epoch_end, mine]})
    drop_ultralytics_raytune(trainer)
    assert trainer.callbacks["on_fit_epoch_end"] == [mine]


class FakeYOLO:
    def __init__(self):
        self.callbacks: dict[str, list] = {}

    def add_callback(self, event, function):
        self.callbacks.setdefault(event, []).append(function)


def test_every_run_registers_the_drop_before_training():
    yolo = FakeYOLO()
    add_run_callbacks(yolo, SimpleNamespace(report=None, model=nn.Linear(2, 2)), resumed=True)
    assert drop_ultralytics_raytune in yolo.callbacks["on_pretrain_routine_start"]
