"""Where the attention sits inside a bottleneck: on the residual branch, before the shortcut add (the paper's place).

At identity start (γ = 0) every placement is the identity, so only γ = 1 tells them apart: there a residual
bottleneck with attention inside must compute ``x + attn(cv2(cv1(x)))`` (CBAM, Woo et al. 2018, Fig. 3: the
module refines the residual branch's output, then the shortcut is added), not ``attn(x + cv2(cv1(x)))``.
"""

from __future__ import annotations

import torch

import attnyolo
from attnyolo.graph import build
from attnyolo.graph.inside_modules import InsideBottleneck
from attnyolo.graph.inside_syntax import inside_rows


def _inside_bottlenecks(cfg: dict) -> list[InsideBottleneck]:
    model = build(cfg, nc=3).eval()
    return [b for i in inside_rows(cfg) for b in model.model[i].modules() if isinstance(b, InsideBottleneck)]


@torch.no_grad()
def test_cbam_inside_c2f_at_gamma_one_is_x_plus_attention_of_the_residual_branch():
    cfg, _ = attnyolo.insert("yolov8n.yaml", "cbam", where="backbone", inside=True)
    blocks = [b for b in _inside_bottlenecks(cfg) if b.add]  # the backbone's C2f keep their shortcut
    assert blocks, "yolov8n's backbone C2f should hold residual bottlenecks"
    torch.manual_seed(0)
    for b in blocks:
        b.attn.gamma.fill_(1.0)
        for p in b.attn.attn.parameters():  # a non-trivial attention (fresh weights, not the identity)
            p.normal_(0, 0.5)
        x = torch.randn(2, b.cv1.conv.in_channels, 8, 12)
        residual = b.cv2(b.cv1(x))
        by_hand = x + b.attn.attn(residual)  # the raw CBAM module, not attnyolo's adapter
        torch.testing.assert_close(b(x), by_hand, rtol=1e-5, atol=1e-5)
        after_add = b.attn.attn(x + residual)  # the wrong place, to show the check can tell them apart
        assert (b(x) - after_add).abs().max() > 1e-2


@torch.no_grad()
def test_gamma_blends_only_the_residual_branch():
    cfg, _ = attnyolo.insert("yolov8n.yaml", "cbam", where="backbone", inside=True)
    b = next(b for b in _inside_bottlenecks(cfg) if b.add)
    b.attn.gamma.fill_(0.25)
    x = torch.randn(1, b.cv1.conv.in_channels, 8, 8)
    residual = b.cv2(b.cv1(x))
    by_hand = x + residual + 0.25 * (b.attn.attn(residual) - residual)
    torch.testing.assert_close(b(x), by_hand, rtol=1e-5, atol=1e-5)
