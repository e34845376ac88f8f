"""One start path (issue 19): a grid run starts the way ``finetune()`` does, with the same refusals, the same
``start.pt`` and the same terminal line for a class-count change."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from rich.console import Console

import attnyolo
from attnyolo.checkpoints import load_checkpoint, save_ultralytics_checkpoint
from attnyolo.experiments import ablate
from attnyolo.experiments.grid import GridError, Variant, resolve
from attnyolo.experiments.runner import RunTask, run_one
from attnyolo.finetune import FinetuneError

BASE = Path(attnyolo.__file__).parent / "data" / "base_yolov8n_bccd.safetensors"
RECIPE = {"epochs": 1, "imgsz": 64, "batch": 16, "workers": 0, "device": "cpu", "plots": False, "fraction": 0.25}


def _ablate_output(grid: dict, folder: Path) -> str:
    """What ``ablate`` prints before it opens its folder (a folder holding a foreign file: it stops right there)."""
    folder.mkdir()
    (folder / "foreign.txt").write_text("not a grid")
    out = io.StringIO()
    with pytest.raises(GridError, match="is not empty"):
        ablate(grid, out=folder, console=Console(file=out, width=60))
    return out.getvalue()


def test_ablate_names_a_class_count_change_in_one_line(one_class_data, default_data, tmp_path):
    grid = {"data": str(one_class_data), "weights": str(BASE), "attention": ["se"]}
    lines = _ablate_output(grid, tmp_path / "one").splitlines()
    assert lines == [
        "ablate: class count changes: the base base_yolov8n_bccd.safetensors has 3 classes (RBC, WBC, Platelets), "
        "the data 1 (cell); the head's class convolutions start new"
    ]  # one line even on a narrow terminal
    assert "class count" not in _ablate_output(dict(grid, data=str(default_data)), tmp_path / "three")


def test_a_grid_refuses_a_base_that_is_not_a_detector_as_finetune_does(default_data, tmp_path):
    path = save_ultralytics_checkpoint(attnyolo.build("yolov8n-cls.yaml", nc=3), tmp_path / "cls.pt")
    with pytest.raises(FinetuneError, match=r"cls.pt: a classify model \(Classify head\); ablate takes detection"):
        resolve({"data": str(default_data), "weights": str(path), "attention": ["se"]})
    with pytest.raises(FinetuneError, match=r"yolov8n-cls.yaml: a classify model .*; ablate takes detection"):
        resolve({"data": str(default_data), "model": "yolov8n-cls.yaml", "attention": ["se"]})


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"freeze_epochs": -1}, "freeze_epochs must be an integer >= 0, got -1"),
        ({"freeze_epochs": "2"}, "freeze_epochs must be an integer >= 0, got '2'"),
        ({"freeze_epochs": 1, "model": "yolov8n.yaml", "weights": None}, "freeze_epochs needs weights:"),
    ],
)
def test_grid_freeze_epochs_is_checked(default_data, extra, message):
    config = {"data": str(default_data), "weights": str(BASE), "attention": ["se"], **extra}
    config = {k: v for k, v in config.items() if v is not None}
    with pytest.raises(GridError, match=message):
        resolve(config, check=False)


def test_grid_freeze_epochs_is_stored_only_when_set(default_data):
    config = {"data": str(default_data), "weights": str(BASE), "attention": ["se"]}
    assert "freeze_epochs" not in resolve(config, check=False).config()  # grids written before it still resume
    assert resolve(dict(config, freeze_epochs=2), check=False).config()["freeze_epochs"] == 2


@pytest.mark.slow
def test_finetune_and_a_grid_run_keep_the_same_start_pt(one_class_data, tmp_path):
    """The same base, attention, placement and seed: ``finetune()`` and a grid run start from the same tensors,
    and both keep them as weights/start.pt (issue 19: only finetune kept it)."""
    result = attnyolo.finetune(BASE, "cbam", "neck", one_class_data, print_report=False, seed=3,
                               project=str(tmp_path), name="ft", **RECIPE)  # fmt: skip
    grid = resolve({"data": str(one_class_data), "weights": str(BASE), "attention": ["cbam"], "recipe": RECIPE,
                    "freeze_epochs": 1}, check=False)  # fmt: skip
    task = RunTask(str(tmp_path / "grid"), "cbam@neck-s3", grid.config(), Variant("cbam", "neck").as_dict(), 3, 1)
    row = run_one(task.__dict__)
    finetuned = load_checkpoint(result.save_dir / "weights" / "start.pt")["model"].state_dict()
    gridded = load_checkpoint(tmp_path / "grid" / row["run_dir"] / "weights" / "start.pt")["model"].state_dict()
    assert finetuned.keys() == gridded.keys() and all(torch.equal(finetuned[k], gridded[k]) for k in finetuned)
    assert row["config"]["train_args"]["model"].endswith("cbam@neck-s3/weights/start.pt")  # rerunnable

    # freeze_epochs in a grid: the 1-epoch run froze every transferred tensor (last.pt's EMA, stored in fp16, still
    # holds the start's base tensors and BatchNorm statistics), while the finetune run without freezing moved them
    def base_tensors(path):
        ckpt = load_checkpoint(path)
        state = (ckpt["ema"] or ckpt["model"]).state_dict()
        return {k: v.half() for k, v in state.items() if k.startswith("model.0.") and v.is_floating_point()}

    frozen = base_tensors(tmp_path / "grid" / row["run_dir"] / "weights" / "last.pt")
    assert frozen and all(torch.equal(v, gridded[k].half()) for k, v in frozen.items())
    moved = base_tensors(result.save_dir / "weights" / "last.pt")
    assert any(not torch.equal(v, finetuned[k].half()) for k, v in moved.items())
