"""Fixtures of the YOLOv5-host tests: base checkpoints written by YOLOv5's own code, once per session."""

from __future__ import annotations

import pytest
import yaml
from yolov5_helpers import INSTALLED, save_like_train_py, yolov5_model


@pytest.fixture(scope="session")
def base_checkpoints(tmp_path_factory):
    """``{"yolov5n": path, "yolov5s": path}``: seed-0 models of YOLOv5's own YAMLs, saved and stripped by YOLOv5."""
    if not INSTALLED:
        pytest.skip("yolov5 is not installed")
    root = tmp_path_factory.mktemp("yolov5-base")
    return {name: save_like_train_py(yolov5_model(name), root / f"{name}.pt") for name in ("yolov5n", "yolov5s")}


@pytest.fixture(scope="session")
def small_data(tmp_path_factory, default_data):
    """The embedded data cut to 48 training and 24 validation images (image lists in a temporary folder, labels
    read from the dataset's own ``labels/``): YOLOv5's validation of a barely trained model draws thousands of boxes
    per image, so the host's end-to-end tests train and validate on fewer images."""
    from attnyolo.data.check import check_data, split_images

    info = check_data(default_data)
    root = tmp_path_factory.mktemp("small-data")
    lists = {}
    for split, count in (("train", 48), ("val", 24)):
        images = split_images(info[split])[:count]
        (root / f"{split}.txt").write_text("".join(f"{image}\n" for image in images))
        lists[split] = str(root / f"{split}.txt")
    data = root / "data.yaml"
    data.write_text(yaml.safe_dump({"train": lists["train"], "val": lists["val"], "names": dict(info["names"])}))
    return data
