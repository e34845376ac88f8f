"""The 2022-2024 modules, built with their defaults, fit every feature layer of the common YOLO YAMLs at every
scale: widths come from the engine's channel table, not typed by hand (a default that needs, say, multiples
of 64 would make ``attnyolo insert`` refuse the nano models)."""

from __future__ import annotations

import pytest

from attnyolo.graph import load
from attnyolo.graph.channels import FEATURE, layer_channels, scale_names
from attnyolo.registry import create

RECENT = ["lska", "msca", "caa", "mlca", "cpca", "external", "mvit2", "agent", "hilo", "cga", "outlook", "cot"]
RECENT += ["irmb", "biformer", "dat"]
BASES = ["yolov8.yaml", "yolo11.yaml", "yolov5.yaml"]


def feature_widths() -> set[int]:
    widths = set()
    for base in BASES:
        cfg = load(base)
        for scale in scale_names(cfg):
            widths |= {x.c_out for x in layer_channels(cfg, scale) if x.kind == FEATURE}
    return widths


WIDTHS = sorted(feature_widths())


def test_the_yolo_widths_include_the_awkward_ones():
    assert {16, 48, 80} <= set(WIDTHS)  # nano's first conv, the m and x scales' multiples of 16 but not 32


@pytest.mark.parametrize("name", RECENT)
def test_default_module_builds_at_every_yolo_feature_width(name):
    refused = {}
    for c in WIDTHS:
        try:
            create(name, c)
        except ValueError as e:
            refused[c] = str(e)
    assert not refused, refused
