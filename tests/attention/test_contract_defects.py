"""Regression tests for four defects of the zoo's contract (issue 16): invalid ECA hyper-parameters accepted,
dynamic-axes ONNX exports of fca and mhsa failing at another input size, and channel-constraint errors that did
not say which hyper-parameter value would fit (the engine's hint, :mod:`attnyolo.graph.hints`)."""

from __future__ import annotations

import pytest
from test_contract import onnx_failure

import attnyolo
from attnyolo.graph.channels import layer_channels, scale_names
from attnyolo.graph.errors import ShapeError
from attnyolo.graph.hints import constrained_params, hint
from attnyolo.graph.layers import attention_name, layers
from attnyolo.registry import create, describe


@pytest.mark.parametrize("name", ["eca", "ceca", "ecam"])
@pytest.mark.parametrize(
    ("hparams", "bad"),
    [
        ({"rd_ratio": 0}, "rd_ratio"),
        ({"rd_ratio": -0.5}, "rd_ratio"),
        ({"rd_ratio": "1/8"}, "rd_ratio"),
        ({"rd_channels": 0}, "rd_channels"),
        ({"rd_divisor": 0}, "rd_divisor"),
        ({"gamma": 0, "kernel_size": 3}, "gamma"),
        ({"beta": "one"}, "beta"),
        ({"act_layer": "no_such_activation"}, "no_such_activation"),
    ],
)
def test_eca_family_refuses_invalid_hyperparameters_whatever_the_preset(name: str, hparams: dict, bad: str):
    with pytest.raises(ValueError, match=bad):
        create(name, 64, **hparams)


@pytest.mark.parametrize("name", ["fca", "mhsa"])
def test_fca_and_mhsa_dynamic_axes_onnx_runs_at_another_size(name: str):
    # exported at 20x20 with dynamic batch/height/width, run at 20x20 and at 24x32 against PyTorch
    assert onnx_failure(name, dynamic=True) is None


def test_shuffle_attention_on_yolov8n_names_a_group_count_that_fits_every_scale():
    with pytest.raises(ShapeError) as err:
        attnyolo.insert("yolov8n.yaml", "sa")
    message = str(err.value)
    assert "groups=32" in message and "every scale" in message
    assert describe("sa").defaults["groups"] == 64  # the module keeps the paper default
    cfg, _ = attnyolo.insert("yolov8n.yaml", "sa", groups=32)  # and the value named works at every scale
    rows = [x for x in layers(cfg) if attention_name(x.module) == "sa"]
    for scale in scale_names(cfg):
        info = layer_channels(cfg, scale)
        for x in rows:
            create("sa", info[x.index].c_in, groups=32)


def test_hint_searches_the_hyperparameters_that_the_constraint_names():
    assert constrained_params(describe("sa")) == ["groups"]
    assert constrained_params(describe("mhsa")) == ["num_heads"]
    assert constrained_params(describe("acmix")) == ["head"]
    assert constrained_params(describe("se")) == []  # no channel constraint: nothing to search


def test_hint_names_the_value_nearest_the_default_that_fits_all_counts():
    spec = describe("sa")  # channels divisible by 2 * groups
    assert "groups=16" in hint(spec, [32, 96, 160], {})  # 2*16 divides all three; 2*32 does not divide 96
    assert "groups=3" in hint(spec, [6, 18], {"groups": 4})  # below the given value first
    assert (
        hint(describe("mhsa"), [7, 11], {}) == "; pass num_heads=1 (accepted by every 'mhsa' row at every scale "
        "of this YAML: channels 7, 11)"
    )


def test_hint_is_empty_when_no_value_fits():
    assert hint(describe("se"), [64], {}) == ""


def test_mhsa_heads_hint_on_yolov8n():
    with pytest.raises(ShapeError, match=r"num_heads=4 \(accepted"):
        attnyolo.insert("yolov8n.yaml", "mhsa", num_heads=7)
