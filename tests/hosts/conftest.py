"""Fixtures of the YOLOv5-host tests: base checkpoints written by YOLOv5's own code, once per session."""

from __future__ import annotations

import pytest
from yolov5_helpers import INSTALLED, save_like_train_py, yolov5_model


@pytest.fixture(scope="session")
def base_checkpoints(tmp_path_factory):
    """``{"yolov5n": path, "yolov5s": path}``: seed-0 models of YOLOv5's own YAMLs, saved and stripped by YOLOv5."""
    if not INSTALLED:
        pytest.skip("yolov5 is not installed")
    root = tmp_path_factory.mktemp("yolov5-base")
    return {name: save_like_train_py(yolov5_model(name), root / f"{name}.pt") for name in ("yolov5n", "yolov5s")}
