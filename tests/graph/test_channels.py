"""Channel rules checked by hand computation (the build matrix checks them against built models)."""

from __future__ import annotations

import pytest
import torch

import attnyolo.graph as g
from attnyolo.graph.channels import FEATURE, FEATURES, HEAD, OTHER, layer_channels, output_channels, resolve_scale


def toy(rows: list, **top) -> dict:
    return {"nc": 80, **top, "backbone": rows[:1], "head": rows[1:]}


@pytest.mark.parametrize(("scale", "p5"), [("n", 256), ("s", 512), ("m", 576), ("l", 512), ("x", 640)])
def test_width_and_max_channels_by_hand_for_yolov8_p5(scale, p5):
    # C2f [1024]: ceil(min(1024, max_channels) * width / 8) * 8 with the YAML's (width, max_channels)
    assert output_channels(g.load("yolov8.yaml"), scale)[8] == p5


def test_concat_sums_its_inputs():
    cfg = g.load("yolov8n.yaml")
    c = output_channels(cfg)
    assert c[11] == c[10] + c[6] == 384


def test_classify_keeps_the_class_count_unscaled():
    info = layer_channels(g.load("yolov8n-cls.yaml"))
    assert info[-1].c_out == 1000 and info[-1].kind == HEAD


def test_unknown_module_keeps_its_input_channels_like_parse_model():
    cfg = toy([[-1, 1, "Conv", [64, 3, 2]], [-1, 1, "MyBlock", [999]], [-1, 1, "Detect", ["nc"]]])
    assert output_channels(cfg)[:2] == [64, 64]


def test_unknown_module_reading_several_layers_is_not_a_feature_map():
    cfg = toy([[-1, 1, "Conv", [64, 3, 2]], [[-1, 0], 1, "MyMerge", []], [-1, 1, "Detect", ["nc"]]])
    assert layer_channels(cfg)[1].kind == OTHER and layer_channels(cfg)[1].c_out is None


def test_cblinear_outputs_a_list_and_cbfuse_its_last_input():
    info = layer_channels(g.load("yolov9e.yaml"))
    assert info[14].c_out == [64, 128, 256, 512, 1024] and info[14].kind == FEATURES
    assert info[16].c_out == info[15].c_out and info[16].kind == FEATURE


def test_torchvision_with_split_outputs_several_tensors():
    cfg = toy([[-1, 1, "TorchVision", [768, "convnext_tiny", "DEFAULT", True, 2, True]], [-1, 1, "Detect", ["nc"]]])
    assert layer_channels(cfg)[0].kind == FEATURES


def test_yolov5_original_leaves_the_detect_output_count_unscaled():
    anchors = [[10, 13, 16, 30, 33, 23]] * 3
    cfg = toy(
        [[-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Conv", [255, 1, 1]], [-1, 1, "Detect", ["nc", "anchors"]]],
        depth_multiple=0.33,
        width_multiple=0.5,
        anchors=anchors,
    )
    assert output_channels(cfg)[:2] == [32, 255]  # 3 anchors x (80 + 5) = 255 stays, 64 x 0.5 = 32


def test_yolov5_original_contract_and_expand():
    cfg = toy(
        [[-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Contract", [2]], [-1, 1, "Expand", [2]], [-1, 1, "Detect", ["nc"]]],
        anchors=3,
    )
    assert output_channels(cfg)[:3] == [64, 256, 64]


def test_single_size_yaml_uses_its_multiples_and_refuses_a_scale():
    cfg = g.load("yolov3-tiny.yaml")
    assert resolve_scale(cfg).name == "" and resolve_scale(cfg).width == 1.0
    with pytest.raises(g.ScaleError, match="no 'scales'"):
        resolve_scale(cfg, "s")


def test_scale_default_is_the_name_scale_then_the_first():
    assert resolve_scale(g.load("yolov8s.yaml")).name == "s"
    assert resolve_scale(g.load("yolov8.yaml")).name == "n"


def test_width_rounding_is_the_ceiling_where_rounding_would_differ():
    # yolov9m (width 1) layer 16 is AConv [180]: ceil(180 / 8) * 8 = 23 * 8 = 184; rounding 22.5 would give 176
    cfg = g.load("yolov9m.yaml")
    assert cfg["head"][16 - len(cfg["backbone"])][2:] == ["AConv", [180]]
    assert output_channels(cfg)[16] == 184
    model = g.build(cfg)
    with torch.no_grad():  # what the built layer really outputs
        features = {}
        model.model[16].register_forward_hook(lambda m, i, o: features.setdefault(16, o))
        model(torch.zeros(1, 3, 64, 64))
    assert features[16].shape[1] == 184
