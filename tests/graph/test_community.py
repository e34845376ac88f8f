"""Hand-made community YAMLs are rebuilt by the engine layer for layer; the original YOLOv5 format is edited.

The fixtures under ``fixtures/`` were written by hand: ``yolov5s.yaml`` and ``yolov5s6.yaml`` in the original
YOLOv5 (v6.0) format, and two "model + CBAM" YAMLs the way tutorials write them (channel typed by hand as the
preceding layer's declared width, every later reference renumbered by hand).
"""

from __future__ import annotations

import pytest
import torch
from graph_helpers import FIXTURES, record_channels

import attnyolo.graph as g
from attnyolo.graph.channels import output_channels
from attnyolo.graph.layers import layers


def engine_form(community: dict) -> dict:
    """The community YAML with each hand-written ``[-1, 1, CBAM, [c]]`` in attnyolo's row form.

    The hand-typed ``c`` must be the declared width of the layer the CBAM reads, which is checked here.
    """
    out = {k: v for k, v in community.items()}
    for section in ("backbone", "head"):
        out[section] = []
    rows = [*community["backbone"], *community["head"]]
    for i, (f, n, m, args) in enumerate(rows):
        section = "backbone" if i < len(community["backbone"]) else "head"
        if m == "CBAM":
            assert f == -1 and args[0] == rows[i - 1][3][0], f"hand-typed channels of row {i}"
            out[section].append([f, n, "ay_cbam", []])
        else:
            out[section].append([f, n, m, args])
    return out


def strip_record(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if k not in ("attnyolo", "scale")}


def test_yolov5s_cbam_after_the_last_head_c3_equals_the_hand_made_yaml():
    community = g.load(FIXTURES / "yolov5s-cbam-community.yaml")
    cfg, m = g.insert(FIXTURES / "yolov5s.yaml", "cbam", where=[23])
    assert layers(cfg)[-1].from_ == [17, 20, 24]
    assert strip_record(cfg) == strip_record(engine_form(community))
    assert m.inserted == (24,)


def test_yolov8_cbam_after_each_neck_output_equals_the_hand_made_yaml():
    community = g.load(FIXTURES / "yolov8-cbam-community.yaml")
    cfg, _ = g.insert("yolov8.yaml", "cbam", where="neck")
    assert layers(cfg)[-1].from_ == [16, 20, 24]
    assert strip_record(cfg) == strip_record(engine_form(community))


def test_original_yolov5_rows_equal_ultralytics_yolov5u_except_the_detect_anchors():
    # The cross-check the next test relies on: same rows, so the built v5u is a reference for channels.
    original, u = g.load(FIXTURES / "yolov5s.yaml"), g.load("yolov5su.yaml")
    rows_o, rows_u = [*original["backbone"], *original["head"]], [*u["backbone"], *u["head"]]
    assert rows_o[:-1] == rows_u[:-1]
    assert rows_o[-1][3] == ["nc", "anchors"] and rows_u[-1][3] == ["nc"]


def test_original_yolov5_channels_equal_the_built_yolov5su_layers():
    original = g.load(FIXTURES / "yolov5s.yaml")
    built = g.build("yolov5su.yaml")  # scale s = width 0.50, the original's width_multiple
    seen = record_channels(built)
    assert output_channels(original)[:-1] == [seen[i] for i in range(len(built.model) - 1)]


@pytest.mark.parametrize(
    ("where", "detect_from"),
    [("neck", [18, 22, 26]), ("before_head", [24, 25, 26]), ("backbone", [20, 23, 26])],
)
def test_original_yolov5_placements_renumber_the_anchor_detect(where, detect_from):
    cfg, _ = g.insert(FIXTURES / "yolov5s.yaml", "se", where=where)
    head = layers(cfg)[-1]
    assert head.module == "Detect" and head.args == ["nc", "anchors"]
    assert head.from_ == detect_from


def test_original_yolov5_p6_neck_insert_moves_all_four_detect_inputs():
    cfg, _ = g.insert(FIXTURES / "yolov5s6.yaml", "eca")
    assert layers(cfg)[-1].from_ == [24, 28, 32, 36]
    assert g.remove(cfg) == g.load(FIXTURES / "yolov5s6.yaml")


def test_original_yolov5_after_c3_uses_the_file_width_for_channels():
    cfg, _ = g.insert(FIXTURES / "yolov5s.yaml", "se", after="C3")
    c = g.layer_channels(cfg)
    # every attention row sits after a C3 of declared width w; width_multiple 0.5 halves it
    for x in layers(cfg):
        if x.module == "ay_se":
            declared = layers(cfg)[x.index - 1].args[0]
            assert c[x.index].c_in == c[x.index].c_out == declared // 2


def test_original_yolov5_build_is_refused_with_the_reason():
    with pytest.raises(g.BuildError, match="original YOLOv5 format"):
        g.build(FIXTURES / "yolov5s.yaml")


def test_the_edited_yolov8_community_equivalent_builds_and_runs():
    cfg, _ = g.insert("yolov8n.yaml", "cbam")
    out = g.build(cfg).eval()(torch.zeros(1, 3, 64, 64))
    assert out[0].shape[1] == 84
