"""Attention inside blocks in real model YAMLs: channels per scale, head shapes, parameter growth, weights.

Every expectation is measured on the built models (forward hooks, parameter sums, Ultralytics' own base model)
and compared with what the engine computes from the YAML alone.
"""

from __future__ import annotations

import pytest
import torch
from graph_helpers import n_params, shapes

import attnyolo
from attnyolo.graph.adapter import AttentionLayer
from attnyolo.graph.inside import bottlenecks
from attnyolo.graph.inside_modules import inner_params
from attnyolo.graph.inside_syntax import inside_rows
from attnyolo.weights import transfer

CASES = [
    (yaml, scale, where, name)
    for yaml in ("yolov8n.yaml", "yolo11n.yaml", "yolov5nu.yaml")
    for scale in ("n", "s")
    for where, name in (("neck", "cbam"), ("backbone", "eca"))
]


def _attns_in(layer: torch.nn.Module) -> list[AttentionLayer]:
    return [m for m in layer.modules() if isinstance(m, AttentionLayer)]


def _run(model: torch.nn.Module, x: torch.Tensor):
    with torch.no_grad():
        return model.eval()(x)


def _flat(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in _flat(v)]
    return [t for v in out for t in _flat(v)]


@pytest.mark.slow
@pytest.mark.parametrize(("yaml", "scale", "where", "name"), CASES)
def test_inside_in_a_real_yaml_matches_hooks_keeps_heads_grows_exactly_and_starts_as_the_base(yaml, scale, where, name):
    cfg, imap = attnyolo.insert(yaml, name, where=where, inside=True)
    assert imap.inserted == () and list(imap.old_to_new) == list(range(imap.size))  # nothing renumbered
    blocks = inside_rows(cfg)
    assert blocks
    torch.manual_seed(0)
    base = attnyolo.build(yaml, scale=scale)
    edited = attnyolo.build(cfg, scale=scale)

    # every base tensor moves, under its own key; only the inner modules are new
    report = transfer(edited, base)
    assert len(report.transferred) == report.source_total == len(base.state_dict())
    assert all(src == dst for src, dst in report.transferred) and not report.skipped
    assert report.newly_initialised and all(".attn." in k for k in report.newly_initialised)

    # channels of each inner attention, seen by forward hooks, equal the YAML's bottleneck width at this scale
    seen: dict[int, list[int]] = {}
    hooks = [
        a.register_forward_pre_hook(lambda m, inp, i=i: seen.setdefault(i, []).append(inp[0].shape[1]))
        for i in blocks
        for a in _attns_in(edited.model[i])
    ]
    x = torch.rand(1, 3, 64, 96)
    got, expected = _run(edited, x), _run(base, x)
    for h in hooks:
        h.remove()
    for i in blocks:
        found = bottlenecks(cfg, i, scale)
        assert seen[i] == [found.width] * found.count, f"layer {i}"

    # head outputs: same shapes, and the same values bit for bit (identity start)
    assert shapes(got) == shapes(expected)
    assert all(torch.equal(a, b) for a, b in zip(_flat(got), _flat(expected), strict=True))

    # parameter growth = the inner modules, = what the engine computes from the YAML
    inner = sum(n_params(a) for i in blocks for a in _attns_in(edited.model[i]))
    assert n_params(edited) - n_params(base) == inner == sum(inner_params(cfg, i, scale) for i in blocks)


# A hand-made YAML per block type, so each rule meets Ultralytics' parse_model at scales n, s and m (C3k2 turns
# c3k on at m, l, x): the rule's bottleneck count and width must equal what forward hooks see.
SCALES = {"n": [0.33, 0.25, 1024], "s": [0.33, 0.5, 1024], "m": [0.67, 0.75, 768]}
ROWS = {
    "Bottleneck": [64],
    "GhostBottleneck": [64],
    "C2f": [128, True],
    "C2": [128],
    "C3": [128, True, 1, 0.75],
    "C3x": [128],
    "BottleneckCSP": [128],
    "C3Ghost": [128],
    "C2fCIB": [128, True],
    "C3k2": [128, False, 0.25],
    "C3k2-c3k": [128, True],
    "C3k2-attn": [128, False, 0.5, True],
    "A2C2f": [512, False],
    "RepNCSPELAN4": [128, 64, 32, 2],
}


def _tiny(block: str, args: list, inside: dict | None = None) -> dict:
    row_args = ([inside] if inside else []) + list(args)
    return {
        "nc": 3,
        "scales": SCALES,
        # RepNCSPELAN4 takes no repeats argument: a row's repeats would stack blocks whose c1 != c2
        "backbone": [
            [-1, 1, "Conv", [64, 3, 2]],
            [-1, 1 if block == "RepNCSPELAN4" else 3, block.split("-")[0], row_args],
        ],
        "head": [[-1, 1, "Classify", [3]]],
    }


@pytest.mark.slow
@pytest.mark.parametrize("block", list(ROWS))
def test_each_block_rule_equals_forward_hooks_at_scales_n_s_m(block):
    cfg = _tiny(block, ROWS[block], {"inside": "se"})
    base_cfg = _tiny(block, ROWS[block])
    assert attnyolo.remove(cfg) == base_cfg
    for scale in SCALES:
        found = bottlenecks(cfg, 1, scale)
        model, base = attnyolo.build(cfg, scale=scale), attnyolo.build(base_cfg, scale=scale)
        attns = _attns_in(model.model[1])
        seen = []
        hooks = [a.register_forward_pre_hook(lambda m, inp, seen=seen: seen.append(inp[0].shape[1])) for a in attns]
        _run(model, torch.rand(1, 3, 32, 32))
        for h in hooks:
            h.remove()
        assert seen == [found.width] * found.count, f"{block} at scale {scale}"
        assert n_params(model) - n_params(base) == inner_params(cfg, 1, scale), f"{block} at scale {scale}"


def test_mixing_inserted_rows_and_inside_blocks_builds_aligns_and_starts_as_the_base():
    y = attnyolo.load("yolov8n.yaml")
    cfg, imap = attnyolo.insert(y, [("eca", "backbone"), ("cbam", "neck", {"inside": True})])
    assert list(imap.inserted) == [5, 8, 12]
    assert inside_rows(cfg) == [imap[15], imap[18], imap[21]]
    base, edited = attnyolo.build(y), attnyolo.build(cfg)
    report = transfer(edited, base)
    assert report.index_map_source == "aligned" and len(report.transferred) == len(base.state_dict())
    x = torch.rand(1, 3, 64, 64)
    assert all(torch.equal(a, b) for a, b in zip(_flat(_run(edited, x)), _flat(_run(base, x)), strict=True))
    assert attnyolo.remove(cfg) == y


def test_gamma_logging_lists_each_inside_attention_under_its_bottleneck():
    from attnyolo.finetune import gamma_values

    cfg, _ = attnyolo.insert("yolov8n.yaml", "se", where=[15], inside=True)
    model = attnyolo.build(cfg)
    values = gamma_values(model)
    assert [v[0] for v in values] == [f"15.m.{j}.attn" for j in range(bottlenecks(cfg, 15).count)]
    assert all(name == "se" and g == 0.0 for _, name, g in values)
