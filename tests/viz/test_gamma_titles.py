"""Every drawn gate map carries its layer's γ: the layer outputs x + γ·(attn(x) − x), so a saturated gate at a
small γ barely changes the output, and a figure without γ invites over-reading it (issue 20)."""

from __future__ import annotations

import pytest
import torch
from viz_helpers import randomised_detector

from attnyolo.viz.capture import attention_maps
from attnyolo.viz.detect import detect
from attnyolo.viz.figures import BLEND_NOTE, image_figure, layer_gammas, with_gamma
from attnyolo.viz.gallery import comparison_figures
from attnyolo.viz.images import prepare


def _titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_each_gate_map_title_shows_its_layers_gamma(val_images):
    model = randomised_detector("cbam")
    with torch.no_grad():  # three inserted layers, three different gammas
        for g, layer in zip((0.05, 0.5, 1.0), (16, 20, 24), strict=True):
            model.model[layer].gamma.fill_(g)
    assert layer_gammas(model) == pytest.approx({"16": 0.05, "20": 0.5, "24": 1.0})
    p = prepare(val_images[0], 160)
    maps = attention_maps(model, p.tensor)
    fig = image_figure(p, detect(model, p), maps, None, title="cbam", gammas=layer_gammas(model))
    titles = _titles(fig)
    for key in maps:
        expected = {"16": "γ = 0.05", "20": "γ = 0.5", "24": "γ = 1"}[key.split(" ", 1)[0]]
        assert any(t.startswith(f"{key}, {expected}") for t in titles), (key, titles)
    assert BLEND_NOTE in fig.get_suptitle()


def test_a_layer_without_gamma_says_it_is_applied_fully():
    assert with_gamma("16 se (channel)", {"16": None}) == "16 se (channel), γ: none (applied fully)"
    assert with_gamma("4.m.0 eca (channel)", {"16": 0.5}) == "4.m.0 eca (channel)"  # an unknown layer: no claim


def test_the_report_gallerys_attention_panel_shows_gamma(val_images):
    model = randomised_detector("cbam")
    with torch.no_grad():
        model.model[16].gamma.fill_(0.05)
    (fig,) = comparison_figures(randomised_detector("cbam", seed=1), {"cbam": model}, val_images[:1], 160).values()
    titles = _titles(fig)
    assert any(t.startswith("cbam attention\n16 cbam (spatial), γ = 0.05") for t in titles), titles
