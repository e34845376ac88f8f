"""Start models of a fine-tuning grid: the baseline continues from the base checkpoint itself; a variant starts
as the base model's function (identity start) holding every base tensor."""

from __future__ import annotations

import torch

from attnyolo.experiments.grid import Variant, resolve
from attnyolo.experiments.runner import save_start, start_model
from attnyolo.graph import build

NAMES = {0: "RBC", 1: "WBC", 2: "Platelets"}


def _base(tmp_path, default_data):
    torch.manual_seed(3)
    model = build("yolov8n.yaml", nc=3).eval()
    with torch.no_grad():  # trained-looking statistics, so "equal" cannot come from two fresh inits
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = save_start(model, tmp_path / "base.pt", str(default_data), {})
    grid = resolve({"data": str(default_data), "weights": str(path), "attention": ["cbam"]}, check=False)
    return model, grid


def test_baseline_continues_from_the_base_checkpoint(tmp_path, default_data):
    model, grid = _base(tmp_path, default_data)
    start = start_model(grid, Variant(), seed=0, nc=3, names=NAMES)
    got, want = start.model.state_dict(), model.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert start.report.counts["transferred"] == len(want)


def test_variant_starts_as_the_base_function_with_every_base_tensor(tmp_path, default_data):
    model, grid = _base(tmp_path, default_data)
    start = start_model(grid, Variant("cbam", "neck"), seed=0, nc=3, names=NAMES)
    assert start.report.counts["transferred"] == len(model.state_dict()) and not start.report.skipped
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(start.model.eval()(x)[0], model(x)[0], atol=1e-5)
    assert start.base_cfg["nc"] == 3 and start.model.names == NAMES
