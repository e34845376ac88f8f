"""Placements resolve to the base layers the documentation promises, and bad ones fail in one line."""

from __future__ import annotations

import pytest

import attnyolo.graph as g
from attnyolo.graph.layers import layers
from attnyolo.graph.placement import AFTER, BEFORE_HEAD, resolve


@pytest.fixture(scope="module")
def v8() -> dict:
    return g.load("yolov8n.yaml")


def test_neck_is_every_head_input(v8):
    assert resolve(v8, "neck") == resolve(v8) == resolve(v8, None) == (AFTER, (15, 18, 21))


def test_backbone_is_every_backbone_layer_the_neck_reads(v8):
    # yolov8: Concat [-1, 6], Concat [-1, 4], Concat [-1, 9], and the Upsample reading SPPF (9)
    assert resolve(v8, "backbone").indices == (4, 6, 9)


def test_before_head_selects_head_inputs_in_before_head_mode(v8):
    assert resolve(v8, "before_head") == (BEFORE_HEAD, (15, 18, 21))


def test_explicit_indices_are_sorted_and_deduplicated(v8):
    assert resolve(v8, [15, 12, 12]).indices == (12, 15)
    assert resolve(v8, "12,15").indices == (12, 15)
    assert resolve(v8, 3).indices == (3,)


def test_after_type_selects_every_layer_of_that_type(v8):
    assert resolve(v8, after="C2f").indices == (2, 4, 6, 8, 12, 15, 18, 21)


def test_after_type_matches_case_and_nn_prefix_loosely(v8):
    assert resolve(v8, after="upsample").indices == (10, 13)


def test_where_and_after_intersect(v8):
    assert resolve(v8, "backbone", after="C2f").indices == (4, 6)


def test_backbone_skips_layers_that_output_a_list_of_tensors():
    v9e = g.load("yolov9e.yaml")
    chosen = resolve(v9e, "backbone").indices
    assert chosen == (22, 25, 29)
    assert all(layers(v9e)[k].module != "CBLinear" for k in chosen)


def test_rtdetr_backbone_reads_through_absolute_and_minus_two_references():
    assert resolve(g.load("rtdetr-l.yaml"), "backbone").indices == (3, 7, 9)


def test_classification_neck_is_the_layer_before_classify():
    cls = g.load("yolov8n-cls.yaml")
    assert resolve(cls, "neck").indices == (len(layers(cls)) - 2,)


@pytest.mark.parametrize(
    ("where", "after", "message"),
    [
        ([40], None, r"layer index 40 is out of range: this YAML has layers 0..22 \(22 is the head\)"),
        ([-3], None, "out of range"),
        ([22], None, "layer 22 is the head; to put attention on its inputs use where='before_head'"),
        ("middle", None, "unknown placement 'middle': use neck, backbone, before_head or layer indices"),
        (None, "C3k2", r"no layer of type 'C3k2' in this YAML \(it has .*C2f.*\); did you mean C2f\?"),
        ("backbone", "Concat", "placement where='backbone' and after='Concat' matches no layer"),
        ([], None, "empty list of layer indices"),
        ([1.5], None, "a layer index is an int, got 1.5"),
    ],
)
def test_bad_placement_gives_a_one_line_error(v8, where, after, message):
    with pytest.raises(g.PlacementError, match=message) as e:
        resolve(v8, where, after)
    assert "\n" not in str(e.value)


def test_several_attentions_in_one_call_resolve_against_the_base_numbering():
    cfg, m = g.insert("yolov8n.yaml", [("eca", "backbone"), ("se", "neck")])
    modules = {i: x.module for i, x in enumerate(layers(cfg))}
    assert [modules[m[k] + 1] for k in (4, 6, 9)] == ["ay_eca"] * 3
    assert [modules[m[k] + 1] for k in (15, 18, 21)] == ["ay_se"] * 3
    assert len(m.inserted) == 6


def test_names_in_a_list_share_the_placement_and_chain_in_order():
    cfg, m = g.insert("yolov8n.yaml", ["se", "eca"], where=[15])
    assert [x.module for x in layers(cfg)[16:18]] == ["ay_se", "ay_eca"]
    assert layers(cfg)[18].from_ == -1 and m[16] == 18


def test_per_item_hparams_override_the_call_hparams():
    cfg, _ = g.insert("yolov8n.yaml", [("se", [15], {"rd_ratio": 0.5}), ("se", [18])], rd_ratio=0.25)
    assert layers(cfg)[16].args == [{"rd_ratio": 0.5}]
    assert layers(cfg)[20].args == [{"rd_ratio": 0.25}]
