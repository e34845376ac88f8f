"""Engagement r = ‖out − in‖ / ‖in‖ per attention layer: exact zero at the identity start, a hand computation
for SE at γ = 1, attention inside blocks, the viz labels, Ultralytics' validator letterbox, and bad input."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import attnyolo as ay
from attnyolo.experiments.engagement import EngagementError, engagement, validator_image
from attnyolo.graph.attention_layers import attention_layers
from attnyolo.viz import attention_maps

IMGSZ = 96


@pytest.fixture(scope="module")
def images(default_data) -> list[Path]:
    return [Path(p) for p in sorted(glob.glob(str(Path(default_data).parent / "images" / "val" / "*.jpg")))[:3]]


def _model(name, gamma: float, **kwargs) -> torch.nn.Module:
    cfg, _ = ay.insert("yolov8n.yaml", name, **kwargs)
    torch.manual_seed(0)
    model = ay.build(cfg, nc=3).eval()
    with torch.no_grad():
        for layer in attention_layers(model).values():
            layer.gamma.fill_(gamma)
    return model


def test_r_is_exactly_zero_at_the_identity_start(images):
    model = _model("cbam", 0.0)
    result = engagement(model, images, imgsz=IMGSZ)
    assert set(result) == {"16", "20", "24"}
    for stat in result.values():
        assert stat.attention == "cbam"
        assert stat.values == (0.0,) * len(images)
        assert stat.median == 0.0 and stat.max == 0.0


def test_r_of_se_at_gamma_one_equals_a_hand_computation(images):
    model = _model("se", 1.0)
    layer = attention_layers(model)["20"]
    seen = {}
    handle = layer.register_forward_pre_hook(lambda _m, args: seen.setdefault("x", args[0].clone()))
    with torch.no_grad():
        model(validator_image(images[0], IMGSZ))
    handle.remove()
    x = seen["x"]
    se = layer.attn
    # SE by hand from its weights: x * sigmoid(fc2(relu(fc1(avgpool(x)))))
    with torch.no_grad():
        z = x.mean((2, 3), keepdim=True)
        s = torch.sigmoid(F.conv2d(torch.relu(F.conv2d(z, se.fc1.weight, se.fc1.bias)), se.fc2.weight, se.fc2.bias))
        want = float((x * s - x).double().norm() / x.double().norm())
    got = engagement(model, images[:1], imgsz=IMGSZ)["20"]
    assert want > 1e-3  # SE at gamma = 1 really changes the map
    assert got.values[0] == pytest.approx(want, rel=1e-5)


def test_attention_inside_blocks_is_found_and_measured(images):
    model = _model("se", 0.5, where="neck", inside=True)
    result = engagement(model, images[:2], imgsz=IMGSZ, batch=2)
    inside = [label for label in result if label.endswith(".attn")]
    assert inside and len(inside) == len(result)
    for label in inside:
        i, rest = label.split(".", 1)
        assert attention_layers(model)[label] is model.model[int(i)].get_submodule(rest)
        assert len(result[label].values) == 2
        assert all(0 < v < float("inf") for v in result[label].values)
        assert result[label].max >= result[label].median


def test_engagement_labels_are_the_viz_labels(images):
    model = _model([("cbam", "neck"), ("se", "neck", {"inside": True})], 1.0)
    labels = set(engagement(model, images[:1], imgsz=IMGSZ))
    maps = attention_maps(model, images[0], imgsz=IMGSZ)
    assert labels == {key.split()[0] for key in maps}
    assert any(label.endswith(".attn") for label in labels) and "16" in labels


def test_images_are_letterboxed_as_ultralytics_validator_does(default_data):
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(default_data))
    dataset = build_yolo_dataset(get_cfg(overrides={"imgsz": 320}), data["val"], 1, data, mode="val", rect=True)
    for i in range(2):
        want = dataset[i]["img"]  # (3, H, W) uint8 RGB, as the validator batches it
        got = validator_image(dataset.im_files[i], 320)
        assert got.shape == (1, *want.shape)
        assert torch.equal((got[0] * 255).round().to(torch.uint8), want)


def test_a_data_yaml_means_its_validation_split(default_data):
    model = _model("eca", 0.0)
    result = engagement(model, default_data, imgsz=32)
    val = glob.glob(str(Path(default_data).parent / "images" / "val" / "*.jpg"))
    assert len(result["16"].values) == len(val) > 0


def test_a_model_without_attention_is_refused_in_one_line(images):
    model = ay.build("yolov8n.yaml", nc=3)
    with pytest.raises(EngagementError, match=r"^model DetectionModel: no attention layers"):
        engagement(model, images, imgsz=IMGSZ)


def test_a_bad_batch_and_an_unreadable_image_are_named(tmp_path, images):
    model = _model("se", 0.0)
    with pytest.raises(EngagementError, match="batch must be a positive integer, got 0"):
        engagement(model, images, batch=0)
    bad = tmp_path / "broken.jpg"
    bad.write_text("not an image")
    with pytest.raises(EngagementError, match="broken.jpg: no such file or not a readable image"):
        engagement(model, [bad])
