"""A real grid run stores the engagement of best.pt: per attention layer, the labels of ``attention_layers`` and the
values ``engagement`` gives when recomputed independently on best.pt's model and the same validation images."""

from __future__ import annotations

from importlib.resources import files

import pytest
from ultralytics import YOLO

from attnyolo.experiments import ablate
from attnyolo.experiments.engagement import engagement
from attnyolo.experiments.store import ResultsStore
from attnyolo.graph.attention_layers import attention_layers

IMGSZ = 64


@pytest.mark.slow
def test_a_grid_run_stores_the_engagement_of_best_pt(default_data, tmp_path):
    base = files("attnyolo.data") / "base_yolov8n_bccd.safetensors"
    config = {
        "data": str(default_data),
        "weights": str(base),
        "attention": ["cbam"],
        "where": "neck",
        "seeds": 1,
        "recipe": {"epochs": 1, "imgsz": IMGSZ, "batch": 16, "workers": 0, "device": "cpu", "plots": False},
    }
    folder = tmp_path / "grid"
    ablate(config, out=folder).close()
    with ResultsStore(folder) as store:
        rows = {r["variant"]: r for r in store.runs()}
    baseline, variant = rows["baseline"], rows["cbam@neck"]
    assert baseline["engagement"] is None and baseline["engagement_seconds"] is None  # no attention: nothing stored
    assert variant["engagement_seconds"] > 0

    net = YOLO(str(folder / variant["run_dir"] / "weights" / "best.pt")).model.float().eval()
    layers = attention_layers(net)
    want = engagement(net, default_data, IMGSZ)  # batch 1, this process: independent of the run's measurement
    stored = variant["engagement"]
    assert [s["label"] for s in stored] == list(layers) == list(want)
    assert len(layers) == 3
    for s in stored:
        w = want[s["label"]]
        assert s["attention"] == w.attention == "cbam"
        assert s["r_values"] == pytest.approx(list(w.values), rel=1e-5, abs=1e-9)
        assert s["r_median"] == pytest.approx(w.median, rel=1e-5, abs=1e-9)
        assert s["r_max"] == pytest.approx(w.max, rel=1e-5, abs=1e-9)
    assert any(s["r_max"] > 0 for s in stored)  # one epoch moved γ off the identity start somewhere
