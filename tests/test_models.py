"""Finding the torch model: inside a YOLO object or a compile wrapper, and EMA before model in a checkpoint."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from ultralytics import YOLO

from attnyolo.models import checkpoint_model, unwrap


def test_unwrap_returns_the_model_inside_a_yolo_object():
    yolo = YOLO("yolov8n.yaml")
    assert unwrap(yolo) is yolo.model


def test_unwrap_returns_the_original_of_a_compiled_model():
    net = nn.Linear(2, 2)
    assert unwrap(torch.compile(net)) is net  # compiled lazily: nothing is compiled by wrapping


def test_unwrap_returns_a_plain_model_itself():
    net = nn.Linear(2, 2)
    assert unwrap(net) is net


@pytest.mark.parametrize("thing", [None, "yolov8n.pt", {"model": 1}])
def test_unwrap_refuses_what_is_not_a_model(thing):
    with pytest.raises(TypeError, match="expected a torch model or an Ultralytics YOLO object, got"):
        unwrap(thing)


def test_checkpoint_model_prefers_ema_then_model():
    a, b = nn.Linear(1, 1), nn.Linear(1, 1)
    assert checkpoint_model({"model": a, "ema": b}) is b
    assert checkpoint_model({"model": a, "ema": None}) is a  # Ultralytics' final best.pt: ema None
    assert checkpoint_model({"model": {"w": torch.zeros(1)}}) is None  # a state dict is not a model
    assert checkpoint_model({}) is None
