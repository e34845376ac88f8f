"""The main job trains, validates and reports real measurements (tiny recipe, embedded data)."""

import json
from pathlib import Path

from rich.console import Console

from attnyolo.demo import DemoRecipe, print_results, run_demo


def test_demo_trains_validates_and_writes_its_result(tmp_path):
    recipe = DemoRecipe(epochs=1, imgsz=128, batch=8, fraction=0.25, workers=0)
    result = run_demo(recipe=recipe, project=tmp_path, name="demo")
    run_dir = Path(result.run_dir)
    assert run_dir.parent == tmp_path.resolve()
    assert (run_dir / "weights" / "best.pt").exists()
    assert (run_dir / "results.csv").exists()
    assert 0.0 <= result.map50_95 <= result.map50 <= 1.0
    from ultralytics.nn.tasks import DetectionModel

    fresh = DetectionModel("yolov8n.yaml", nc=3, verbose=False)
    assert result.params == sum(p.numel() for p in fresh.parameters())  # the trained model, unfused
    assert result.gflops > 0 and result.latency_ms > 0
    saved = json.loads((run_dir / "attnyolo_result.json").read_text())
    assert saved["map50"] == result.map50 and saved["recipe"]["epochs"] == 1

    console = Console(record=True, width=200)
    print_results([result], console)
    text = console.export_text()
    assert "mAP50-95" in text and f"{result.params:,}" in text and str(run_dir) in text
