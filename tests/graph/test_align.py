"""Aligning two YAMLs of one base: shared layers by position, attention rows by slot, module and chain order."""

from __future__ import annotations

import attnyolo.graph as g
from attnyolo.graph.align import align_layers
from attnyolo.graph.layers import layers


def _record(cfg: dict) -> list[int]:
    return cfg["attnyolo"]["index_map"]


def test_the_same_model_aligns_to_the_identity():
    cfg, _ = g.insert("yolov8n.yaml", "cbam", "neck")
    aligned = align_layers(cfg, cfg)
    assert aligned.mapping == {i: i for i in range(26)} and aligned.total


def test_an_edited_source_into_the_base_keeps_the_base_layers_and_places_no_attention():
    cfg, _ = g.insert("yolov8n.yaml", "cbam", "neck")
    aligned = align_layers(cfg, g.load("yolov8n.yaml"))
    assert aligned.unplaced == (16, 20, 24)
    assert aligned.mapping == {new: old for old, new in enumerate(_record(cfg))}  # the inverse of the record


def test_after_a_layer_and_before_the_head_reading_it_are_different_slots():
    neck, _ = g.insert("yolov8n.yaml", "cbam", [15])
    head, _ = g.insert("yolov8n.yaml", "cbam", "before_head")
    aligned = align_layers(neck, head)
    assert aligned.unplaced == (16,)  # cbam after 15 has no twin among the rows that feed only the head
    assert all(aligned.mapping[s] == t for s, t in zip(_record(neck), _record(head), strict=True))


def test_a_chain_keeps_its_order_when_a_row_joins_it():
    source, _ = g.insert("yolov8n.yaml", "se", [15])
    target, _ = g.insert("yolov8n.yaml", [("cbam", [15]), ("se", [15])])
    aligned = align_layers(source, target)
    assert [layers(target)[aligned.mapping[16]].module] == ["ay_se"] and aligned.total


def test_another_base_does_not_align():
    assert align_layers(g.load("yolov8n.yaml"), g.load("yolo11n.yaml")) is None
    assert align_layers(g.load("yolov8n.yaml"), {"not": "a model"}) is None
