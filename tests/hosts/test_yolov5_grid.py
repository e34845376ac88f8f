"""`attnyolo ablate` on the YOLOv5 v7.0 host: bad input, the start model, and a tiny grid through the same store,
verdicts and report as Ultralytics grids."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from ultralytics.data.utils import img2label_paths
from yolov5_helpers import code, requires_yolov5, save_like_train_py, yolov5_model

from attnyolo import build
from attnyolo.checkpoints import load_checkpoint, save_ultralytics_checkpoint
from attnyolo.data.check import check_data, split_images
from attnyolo.experiments import ablate, valstats
from attnyolo.experiments.grid import GridError, Variant, resolve
from attnyolo.experiments.run_hosts import grid_host
from attnyolo.experiments.run_hosts.yolov5 import YOLOv5GridHost, epoch_rows
from attnyolo.experiments.runner import start_model
from attnyolo.hosts.base import GridHost, HostFormatError
from attnyolo.hosts.yolov5 import YOLOv5HostError
from attnyolo.report import write_report

pytestmark = requires_yolov5

RECIPE = {"epochs": 1, "imgsz": 64, "batch_size": 8, "workers": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def base3(tmp_path_factory):
    """A yolov5n for the embedded data's 3 classes, built by YOLOv5's own Model and saved/stripped by its own code."""
    path = tmp_path_factory.mktemp("yolov5-base3") / "yolov5n-3.pt"
    return save_like_train_py(yolov5_model("yolov5n", seed=0, nc=3), path)


def _grid(data, **extra) -> dict:
    return {"data": str(data), "host": "yolov5", "attention": "se", "recipe": dict(RECIPE), **extra}


def test_host_selection(default_data, base3):
    grid = resolve(_grid(default_data, weights=str(base3)))
    assert grid.host == "yolov5" and grid.config()["host"] == "yolov5"
    host = grid_host(grid.host)
    assert isinstance(host, YOLOv5GridHost) and isinstance(host, GridHost) and host.name == "yolov5"


def test_ultralytics_yaml_and_checkpoint_refused(tmp_path, default_data):
    with pytest.raises(HostFormatError, match=r"^yolov8n\.yaml: an Ultralytics-8 model YAML .*leave out host: yolov5"):
        resolve(_grid(default_data, model="yolov8n.yaml"))
    pt = save_ultralytics_checkpoint(build("yolov8n.yaml", nc=3), tmp_path / "v8.pt", {})
    with pytest.raises(HostFormatError) as e:
        resolve(_grid(default_data, weights=str(pt)))
    assert str(pt) in str(e.value) and "Ultralytics-8 checkpoint" in str(e.value)


def test_yolov5_checkpoint_refused_by_the_ultralytics_host(default_data, base3):
    with pytest.raises(HostFormatError) as e:
        resolve({**_grid(default_data, weights=str(base3)), "host": "ultralytics", "recipe": {"epochs": 1}})
    assert str(base3) in str(e.value) and "--host yolov5" in str(e.value)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"recipe": {"epochs": 1, "batch": 8}}, "recipe argument batch= is not a YOLOv5 train.py option"),
        ({"recipe": {"cfg": "x.yaml"}}, "recipe argument cfg= cannot be set in a grid"),
        ({"recipe": {"seed": 3}}, "recipe argument seed= cannot be set in a grid"),
        ({"freeze_epochs": 1}, "freeze_epochs is applied by the Ultralytics trainer's callbacks"),
        ({"attention_recipe": {"warmup_epochs": 1}}, "attention_recipe is applied by the Ultralytics trainer's"),
        ({"yolov5": "/nowhere/yolov5"}, "/nowhere/yolov5: no such folder"),
    ],
)
def test_bad_yolov5_grids(default_data, base3, extra, expected):
    with pytest.raises((GridError, YOLOv5HostError), match=re.escape(expected)):
        resolve({**_grid(default_data, weights=str(base3)), **extra})


def test_start_model_is_the_base_with_every_tensor(default_data, base3):
    """The se@neck start of a YOLOv5 grid: YOLOv5's own DetectionModel holding every base tensor, and (identity start)
    the same output as the base model YOLOv5's own code wrote, bit for bit."""
    grid = resolve(_grid(default_data, weights=str(base3)))
    info = check_data(grid.data)
    start = start_model(grid, Variant("se", "neck"), 0, int(info["nc"]), dict(info["names"]))
    assert type(start.model) is code().yolo.DetectionModel
    assert start.report.counts["skipped"] == 0 and start.report.counts["transferred"] == start.report.counts["source"]
    base = load_checkpoint(base3)["model"].float().eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = base(x)[0], start.model.float().eval()(x)[0]
    assert torch.equal(expected, got)


def test_epoch_rows_use_ultralytics_names():
    rows = epoch_rows([{"epoch": 0, "metrics/mAP_0.5:0.95": 0.25, "metrics/mAP_0.5": 0.5, "train/obj_loss": 1.0}])
    assert rows == [{"epoch": 1, "metrics/mAP50-95(B)": 0.25, "metrics/mAP50(B)": 0.5, "train/obj_loss": 1.0}]


def _val_counts(data) -> tuple[int, int]:
    """Validation images and labelled boxes of ``data``, counted from the label files (independent of any model)."""
    images = split_images(check_data(data)["val"])
    boxes = 0
    for label in map(Path, img2label_paths([str(i) for i in images])):
        if label.is_file():
            boxes += sum(1 for line in label.read_text().splitlines() if line.strip())
    return len(images), boxes


@pytest.mark.slow
def test_tiny_grid_on_yolov5(tmp_path, small_data, base3):
    """baseline + se@neck, 1 seed, 1 epoch at 64 px from a YOLOv5-written base: the store, val_stats and report."""
    folder = tmp_path / "grid"
    store = ablate(_grid(small_data, weights=str(base3)), out=folder)
    done, failed = store.runs("done"), store.runs("failed")
    grid = store.grid()
    store.close()
    assert not failed, [r["error"] for r in failed]
    assert sorted(r["run_id"] for r in done) == ["baseline-s0", "se@neck-s0"]
    # YOLOv5's deterministic seeding, in warn-only mode (SE's pooling has no deterministic CUDA backward)
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert grid["config"]["host"] == "yolov5"

    ap_per_class = code().module("utils.metrics").ap_per_class
    n_images, n_boxes = _val_counts(small_data)
    for row in done:
        assert row["versions"]["yolov5"].startswith("7.0")
        assert row["config"]["val"]["command"].startswith("attnyolo yolov5 val --weights runs/")
        # the stored numbers are YOLOv5's own final validation of best.pt (train.py's 'Validating best.pt...')
        assert row["map50_95"] == pytest.approx(row["config"]["val"]["trainer_final_map50_95"], abs=1e-9)
        stats = valstats.load(folder / row["val_stats"])
        assert set(stats) == set(valstats.KEYS) and stats["tp"].shape[1] == 10
        assert len(stats["images"]) == n_images and len(stats["target_cls"]) == n_boxes
        assert list(stats["names"]) == list(check_data(small_data)["names"].values())
        # mAP recomputed from the arrays with YOLOv5's own ap_per_class is the stored mAP
        *_, ap, _classes = ap_per_class(stats["tp"], stats["conf"], stats["pred_cls"], stats["target_cls"], names={})
        assert float(ap.mean()) == pytest.approx(row["map50_95"], abs=1e-9)
        assert float(ap[:, 0].mean()) == pytest.approx(row["map50"], abs=1e-9)
        assert np.isclose(np.mean(list(row["per_class_ap"].values())), row["map50_95"], atol=1e-9)
        assert [e["epoch"] for e in row["epochs"]] == [1] and "metrics/mAP50-95(B)" in row["epochs"][0]
        assert row["params"] > 0 and row["gflops"] > 0 and row["latency_ms"] > 0
    se = next(r for r in done if r["run_id"] == "se@neck-s0")
    base = next(r for r in done if r["run_id"] == "baseline-s0")
    assert se["params"] > base["params"]
    assert se["engagement"] and all(e["attention"] == "se" for e in se["engagement"])
    assert base["engagement"] is None
    assert se["gamma"] and {g["attention"] for g in se["gamma"]} == {"se"}

    # few resamples and no gallery: a from-scratch model's thousands of boxes per image make both slow, and what is
    # tested here is the host's report, not the statistics (tests/report)
    analysis, markdown, page = write_report(folder, resamples=500, gallery=0)
    text = markdown.read_text()
    assert text.startswith(f"# attnyolo report: {folder.name} (host: yolov5)")
    assert "- **host**: yolov5" in text and "YOLOv5 v7.0's own val.py" in text
    assert "(host: yolov5)</h1>" in page.read_text()
    assert {r.variant for r in analysis.rows} == {"baseline", "se@neck"}
