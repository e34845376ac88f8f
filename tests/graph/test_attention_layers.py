"""attention_layers: inserted rows and attention inside blocks, one label format (the module path without
``model.``), the adapters themselves, in model order."""

from __future__ import annotations

import attnyolo as ay
from attnyolo.graph.adapter import AttentionLayer
from attnyolo.graph.attention_layers import attention_layers, label_order


def test_rows_and_inside_blocks_are_found_with_their_module_paths_as_labels():
    cfg, _ = ay.insert("yolov8n.yaml", [("cbam", "neck"), ("se", "neck", {"inside": True})])
    model = ay.build(cfg, nc=3)
    found = attention_layers(model)
    by_path = {path: m for path, m in model.named_modules() if isinstance(m, AttentionLayer)}
    assert list(found) == [path.removeprefix("model.") for path in by_path]  # every one, in model order
    assert all(found[p.removeprefix("model.")] is m for p, m in by_path.items())
    rows = [label for label in found if label.isdigit()]
    inside = [label for label in found if not label.isdigit()]
    assert rows and inside and all(label.endswith(".attn") for label in inside)
    assert {found[label].attention for label in rows} == {"cbam"}
    assert {found[label].attention for label in inside} == {"se"}
    for label in rows:
        assert found[label] is model.model[int(label)]
    state = model.state_dict()
    assert all(f"model.{label}.gamma" in state for label in found)  # a label is the state-dict prefix


def test_a_yolo_object_and_a_model_without_attention():
    from ultralytics import YOLO

    assert attention_layers(YOLO("yolov8n.yaml")) == {}
    cfg, _ = ay.insert("yolov8n.yaml", "eca")
    assert list(attention_layers(ay.build(cfg, nc=3))) == ["16", "20", "24"]


def test_label_order_is_model_order():
    labels = ["16", "4.m.1.attn", "15", "4.m.0.attn", "4.m.10.attn", "15.m.0.attn", "4", 2]
    assert sorted(labels, key=label_order) == [
        2,
        "4",
        "4.m.0.attn",
        "4.m.1.attn",
        "4.m.10.attn",
        "15",
        "15.m.0.attn",
        "16",
    ]
