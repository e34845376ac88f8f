"""Cost pruning on hand-computed parameter counts: SE (r = 16, paper widths C/r, biases) after the three neck
outputs of yolov8n (C = 64, 128, 256) adds sum(2 C^2/16 + C/16 + C + 1) = 11,231 parameters (the 1: the identity
start's gamma), ECA adds its 1-D kernel (k = 3, 5, 5 for these C: |log2(C)/2 + 1/2| made odd) and a gamma each: 16."""

from __future__ import annotations

import pytest
from ultralytics.nn.tasks import DetectionModel

from attnyolo.graph import load
from attnyolo.search import SearchError
from attnyolo.search.candidates import candidates, check_candidates
from attnyolo.search.costs import limits, measure, prune

NECK_CHANNELS = (64, 128, 256)  # yolov8n's P3, P4, P5 outputs
SE = sum(2 * c * (c // 16) + c // 16 + c + 1 for c in NECK_CHANNELS)
ECA = sum(k + 1 for k in (3, 5, 5))


@pytest.fixture(scope="module")
def measured():
    base = load("yolov8n.yaml")
    found = candidates("se,eca", "neck,backbone")
    return measure(base, check_candidates(base, found), nc=3, imgsz=64)


@pytest.fixture(scope="module")
def base_params():
    # Ultralytics' own build of the base, 3 classes: an independent count of the base's parameters
    return sum(p.numel() for p in DetectionModel("yolov8n.yaml", nc=3, verbose=False).parameters())


def test_added_params_match_the_hand_count(measured, base_params):
    assert SE == 11_231 and ECA == 16
    for place in ("neck", "backbone"):  # yolov8n's backbone outputs the neck reads have the same widths
        assert measured[f"se@{place}"].added_params == SE
        assert measured[f"eca@{place}"].added_params == ECA
        assert measured[f"se@{place}"].params == base_params + SE


def test_an_absolute_limit_prunes_se_and_keeps_eca(measured, base_params):
    prune(measured, base_params, limits(max_params=SE - 1))
    assert {k: bool(c.pruned) for k, c in measured.items()} == {
        "se@neck": True, "se@backbone": True, "eca@neck": False, "eca@backbone": False}  # fmt: skip
    assert measured["se@neck"].pruned == f"added params {SE:,} > {SE - 1:,}"
    prune(measured, base_params, limits(max_params=SE))  # at the limit: kept
    assert not any(c.pruned for c in measured.values())


def test_a_share_of_the_base_params(measured, base_params):
    share = SE / base_params * 100  # percent
    prune(measured, base_params, limits(max_params=f"{share * 0.999:.6f}%"))
    assert measured["se@neck"].pruned and not measured["eca@neck"].pruned
    prune(measured, base_params, limits(max_params=f"{share * 1.001:.6f}%"))
    assert not measured["se@neck"].pruned


def test_a_gflops_ratio_limit_prunes_by_the_measured_ratio(measured, base_params):
    se, eca = measured["se@neck"].gflops_ratio, measured["eca@neck"].gflops_ratio
    assert 1 < eca < se  # SE's two 1x1 convolutions cost more than ECA's 1-D kernel
    prune(measured, base_params, limits(max_gflops_ratio=(se + eca) / 2))
    assert measured["se@neck"].pruned.startswith("GFLOPs") and not measured["eca@neck"].pruned


def test_a_limit_nothing_meets_is_one_line(measured, base_params):
    with pytest.raises(SearchError) as e:
        prune(measured, base_params, limits(max_params=ECA - 1))
    assert str(e.value) == (
        f"no candidate meets the cost limits (added params <= {ECA - 1}): the cheapest, eca@neck, adds {ECA} params "
        f"at GFLOPs x{measured['eca@neck'].gflops_ratio:.4f}"
    )
