"""Attention inside blocks, block by block: every supported block type x every non-temporal zoo module.

Each block is built alone (Ultralytics' class, tiny channel counts and a 4x6 map) with its bottleneck width set
to ``w``; the patched copy must hold one attention per bottleneck at width ``w`` on the residual branch, give
the plain block's output bit for bit at identity start, and train (a backward pass at batch 1 reaches every
attention parameter).
"""

from __future__ import annotations

import copy

import pytest
import torch
from ultralytics.nn.modules.block import (
    C2,
    C3,
    A2C2f,
    Bottleneck,
    BottleneckCSP,
    C2f,
    C2fCIB,
    C3Ghost,
    C3k,
    C3k2,
    C3x,
    GhostBottleneck,
    RepNCSPELAN4,
)

import attnyolo
from attnyolo.graph.adapter import AttentionLayer
from attnyolo.graph.inside_modules import CLASSES, patch
from attnyolo.registry import describe

# block name -> (builder for bottleneck width w: (block, its input channels), bottlenecks it holds)
BLOCKS = {
    "Bottleneck": (lambda w: (Bottleneck(w, w), w), 1),
    "GhostBottleneck": (lambda w: (GhostBottleneck(w, w), w), 1),
    "C2f": (lambda w: (C2f(w, 2 * w, 2, True), w), 2),
    "C2": (lambda w: (C2(w, 2 * w, 1), w), 1),
    "C3": (lambda w: (C3(w, 2 * w, 2), w), 2),
    "C3x": (lambda w: (C3x(w, 2 * w, 1), w), 1),
    "BottleneckCSP": (lambda w: (BottleneckCSP(w, 2 * w, 1), w), 1),
    "C3Ghost": (lambda w: (C3Ghost(w, 2 * w, 1), w), 1),
    "C2fCIB": (lambda w: (C2fCIB(w, 2 * w, 1, True), w), 1),
    "C3k2": (lambda w: (C3k2(w, 2 * w, 1, c3k=False), w), 1),
    "C3k2-c3k": (lambda w: (C3k2(w, 4 * w, 1, c3k=True), w), 2),  # C3k(c, c) inside: width c / 2
    "C3k2-attn": (lambda w: (C3k2(w, 2 * w, 1, attn=True), w), 1),  # Sequential(Bottleneck, PSABlock)
    "C3k": (lambda w: (C3k(w, 2 * w, 2), w), 2),
    "A2C2f-c3k": (lambda w: (A2C2f(w, 4 * w, 1, a2=False), w), 2),
    "RepNCSPELAN4": (lambda w: (RepNCSPELAN4(w, 2 * w, 2 * w, 2 * w, 1), w), 2),  # two RepCSP, one RepBottleneck each
}
WIDTHS = (16, 64, 128, 256)
NON_TEMPORAL = [n for n in attnyolo.available() if not describe(n).needs_frames]


def _widths(name: str) -> list[int]:
    """The two smallest candidate widths the module's documented channel constraint accepts."""
    spec, ok = describe(name), []
    for w in WIDTHS:
        try:
            spec.create(w)
        except ValueError:
            continue
        ok.append(w)
    return ok[:2]


def _attentions(block: torch.nn.Module) -> list[AttentionLayer]:
    return [m for m in block.modules() if isinstance(m, AttentionLayer)]


def test_the_matrix_covers_every_non_temporal_zoo_module_at_two_widths():
    assert len(NON_TEMPORAL) == len(attnyolo.available()) - sum(describe(n).needs_frames for n in attnyolo.available())
    assert all(len(_widths(n)) == 2 for n in NON_TEMPORAL)


@pytest.mark.slow
@pytest.mark.parametrize("name", NON_TEMPORAL)
def test_every_block_type_takes_the_module_inside_keeps_outputs_and_trains_at_batch_1(name):
    for w in _widths(name):
        for block_name, (build, count) in BLOCKS.items():
            where = f"{block_name} at width {w}"
            torch.manual_seed(0)
            base, c1 = build(w)
            patched = copy.deepcopy(base)
            assert patch(patched, name, {}, {}) == count, where
            attns = _attentions(patched)
            assert len(attns) == count and all(a.channels == w for a in attns), where
            assert sum(type(m) in CLASSES for m in patched.modules()) == count, where
            # the base block's tensors keep their names; the new ones all sit under a bottleneck's "attn."
            new_keys = set(patched.state_dict()) - set(base.state_dict())
            assert set(base.state_dict()) <= set(patched.state_dict()), where
            assert new_keys and all(".attn." in f".{k}" for k in new_keys), where

            x = torch.randn(1, c1, 4, 6)
            with torch.no_grad():
                expected, got = base.eval()(x), patched.eval()(x)
            assert got.shape == expected.shape, where
            if all(a.start != "off" for a in attns):  # identity start: the plain block, bit for bit
                assert torch.equal(got, expected), where

            seen = []
            hooks = [a.register_forward_pre_hook(lambda m, i, seen=seen: seen.append(i[0].shape[1])) for a in attns]
            for a in attns:
                if a.gamma is not None:
                    a.gamma.data.fill_(0.5)  # away from 0, so the attention's own parameters get gradients
            patched.train()
            patched(x).square().mean().backward()
            for h in hooks:
                h.remove()
            assert seen == [w] * count, where
            grads = [p.grad for a in attns for p in a.parameters()]
            assert all(g is not None and torch.isfinite(g).all() for g in grads), where
            assert any(bool(g.abs().sum() > 0) for g in grads) or not grads, where
