"""Every model YAML Ultralytics ships, at scales n and s, with CBAM at the neck and in the backbone.

For each (YAML, scale) the base model is built once; forward hooks on it give every layer's real output
channels, which must equal :mod:`attnyolo.graph.channels`' table (computed without building). Then for
``where="neck"`` and ``"backbone"`` the edited YAML must build, give head outputs of exactly the base
model's shapes on a 64x64 input, and grow the parameter count by exactly the inserted modules' own count:
``attnyolo.create("cbam", c)`` for the channels ``c`` the hooks saw at each insertion point, plus the adapter's
identity-start ``gamma`` (one scalar per inserted layer; CBAM does not start as the identity by itself).
"""

from __future__ import annotations

import pytest
import torch
from graph_helpers import SKIPPED, matrix_scales, n_params, record_channels, shapes, shipped, with_scale

import attnyolo
import attnyolo.graph as g
from attnyolo.graph.channels import FEATURE, FEATURES, layer_channels
from attnyolo.graph.placement import resolve

ATTENTION = "cbam"
GAMMA = 1  # parameters of the adapter itself: its identity-start gamma
PLACEMENTS = ("neck", "backbone")
IMGSZ = 64

# Models whose base build takes over a second on one CPU thread: in the full run, out of the fast loop.
HEAVY = {
    "yolov3.yaml",
    "yolov3-spp.yaml",
    "yolov9c.yaml",
    "yolov9c-seg.yaml",
    "yolov9e.yaml",
    "yolov9e-seg.yaml",
    "yolov10b.yaml",
    "yolov10l.yaml",
    "yolov10x.yaml",
    "rtdetr-l.yaml",
    "rtdetr-x.yaml",
    "rtdetr-resnet50.yaml",
    "rtdetr-resnet101.yaml",
    "yolov8-cls-resnet101.yaml",
}


def _cases() -> list:
    out = []
    for path in shipped():
        if path.name in SKIPPED:
            continue
        for scale in matrix_scales(g.load(path)):
            marks = [pytest.mark.slow] if path.name in HEAVY else []
            out.append(pytest.param(path.name, scale, marks=marks, id=f"{path.name}-{scale or 'single'}"))
    return out


CASES = _cases()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Hundreds of small builds: one thread avoids OpenMP spin-waiting on a shared 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_matrix_covers_every_shipped_yaml_or_records_why_not():
    covered = {c.values[0] for c in CASES}
    assert covered | set(SKIPPED) == {p.name for p in shipped()}
    assert len(covered) >= 60  # v3, v5, v6, v8, v9, v10, 11, 12, 26, RT-DETR, world, yoloe, cls, seg, pose, obb...


def test_skipped_resnet18_classifier_really_asks_torchvision_for_pretrained_weights():
    layer = g.load("yolo11-cls-resnet18.yaml")["backbone"][0]
    assert layer[2] == "TorchVision" and layer[3][2] == "DEFAULT"  # weights="DEFAULT" downloads on build


def _forward(model: torch.nn.Module):
    with torch.no_grad():
        return shapes(model.eval()(torch.zeros(1, 3, IMGSZ, IMGSZ)))


@pytest.mark.parametrize(("name", "scale"), CASES)
def test_shipped_yaml_channels_and_attention_at_neck_and_backbone(name, scale):
    base = with_scale(g.load(name), scale)
    model = g.build(base)
    seen = record_channels(model, IMGSZ)
    for x in layer_channels(base, scale):
        if x.kind in (FEATURE, FEATURES):
            assert seen[x.index] == x.c_out, f"layer {x.index} ({x.module}) at scale {scale}"
    base_out, base_params = _forward(model), n_params(model)

    for where in PLACEMENTS:
        cfg, index_map = g.insert(base, ATTENTION, where=where)
        edited = g.build(cfg)
        points = resolve(base, where).indices
        assert len(index_map.inserted) == len(points)
        assert _forward(edited) == base_out, f"head outputs changed with {where}"
        own = sum(n_params(attnyolo.create(ATTENTION, seen[k])) + GAMMA for k in points)
        assert n_params(edited) - base_params == own, f"parameter growth with {where}"
