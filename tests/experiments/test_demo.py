"""`attnyolo demo`: the grid it builds, its arguments, and `--quick` end to end (verdict row per variant)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from attnyolo.cli.app import main
from attnyolo.experiments.demo import (
    DEMO_ATTENTION_RECIPE,
    DEMO_RECIPE,
    DEMO_VARIANTS,
    MAX_DEMO_WORKERS,
    POSITIVE_CONTROL,
    DemoError,
    data_label,
    demo_command,
    demo_grid,
)
from attnyolo.experiments.grid import resolve
from attnyolo.experiments.runner import git_rev, machine, versions
from attnyolo.experiments.store import ResultsStore
from attnyolo.finetune.recipe import Recipe, default_recipe


def test_demo_grid_covers_neck_and_backbone_with_two_seeds():
    grid = demo_grid()
    wheres = [v["where"] for v in grid["variants"]]
    assert wheres.count("neck") >= 4 and "backbone" in wheres
    assert grid["seeds"] == [0, 1]
    assert grid["recipe"] == DEMO_RECIPE
    assert Path(grid["weights"]).name == "base_yolov8n_bccd.safetensors"
    assert grid["variants"][:-1] == [{"attention": a, "where": w} for a, w in DEMO_VARIANTS]
    # the positive control last: the same CBAM-in-the-backbone edit, loaded by Ultralytics' key matching
    assert grid["variants"][-1] == POSITIVE_CONTROL == {"attention": "cbam", "where": "backbone", "load": "keys"}
    # the attention warm-up for every run, the control's included (one grid-wide schedule)
    assert grid["attention_recipe"] == DEMO_ATTENTION_RECIPE
    resolved = resolve(grid, check=False)
    labels = [v.label for v in resolved.variants]
    assert labels[0] == "baseline" and "cbam@backbone" in labels and "cbam@backbone+load=keys" in labels
    assert resolved.config()["attention_recipe"] == {"warmup_epochs": 1, "new_lr_scale": 100, "gamma_lr_scale": 300,
                                                     "new_max_lr": 0.01, "gamma_max_lr": 0.03}  # fmt: skip
    assert Recipe(**resolved.config()["attention_recipe"]) == default_recipe(2)  # the default for its 2 epochs


def test_demo_grid_passes_ultralytics_arguments_and_names_the_data(tmp_path):
    grid = demo_grid(tmp_path / "other.yaml", quick=True, epochs=3, imgsz=256)
    assert grid["recipe"]["epochs"] == 3 and grid["recipe"]["imgsz"] == 256
    assert grid["seeds"] == [0]
    assert grid["data"] == str(tmp_path / "other.yaml")
    assert "embedded" not in data_label(tmp_path / "other.yaml") and "other.yaml" in data_label("other.yaml")
    assert data_label(None).startswith("embedded BCCD")
    with pytest.raises(DemoError, match="seeds"):
        demo_grid(seeds=0)


def test_demo_data_given_twice_is_one_line_error(tmp_path, capsys):
    assert main(["demo", "--data", "a.yaml", "data=b.yaml", "--out", str(tmp_path / "g")]) == 2
    assert "give the data once" in capsys.readouterr().err


def test_demo_bad_yolo_argument_is_one_line_error(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path / "g"), "no_such_arg=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("attnyolo: error:") and "no_such_arg" in err and len(err.strip().splitlines()) == 1


def test_demo_out_holding_another_grid_is_one_short_line_and_leaves_it(tmp_path, capsys):
    out = tmp_path / "g"
    stored = resolve(demo_grid(quick=True)).config()  # the quick demo's folder, data at a long path of its own
    stored["data"] = "/" + "/".join(["a-rather-long-folder-name"] * 8) + "/data.yaml"
    ResultsStore.create(out, stored, machine(), versions(), git_rev()).close()
    before = hashlib.sha256((out / "ablate.sqlite").read_bytes()).hexdigest()
    assert main(["demo", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    print(err)
    assert len(err.splitlines()) == 1 and len(err) < 250 + len(str(out)) * 2  # one short line, not a grid dump
    assert f"{out} holds another grid" in err and "give another --out folder" in err
    assert "data: stored and given differ" in err and "recipe.epochs: stored 1, given 2" in err
    assert "1 more" in err  # variants: counted, not listed
    assert hashlib.sha256((out / "ablate.sqlite").read_bytes()).hexdigest() == before


def test_demo_resume_command_repeats_the_demo_arguments():
    """What a Ctrl-C during the demo prints as the command that resumes it (the demo, not a bare ablate)."""
    assert (
        demo_command(None, True, Path("runs/x y"), None, {"epochs": 3})
        == "attnyolo demo --quick --out 'runs/x y' epochs=3"
    )
    assert demo_command("my.yaml", False, "g", 3, {}) == "attnyolo demo --data my.yaml --out g --seeds 3"
    assert demo_command(None, False, "g", None, {}, workers=1) == "attnyolo demo --out g --workers 1"


def test_demo_runs_side_by_side_by_default_and_refuses_zero_workers(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(
        "attnyolo.experiments.ablate",
        lambda grid, **kw: calls.append(kw) or (_ for _ in ()).throw(DemoError("stop here")),
    )
    monkeypatch.setattr("attnyolo.experiments.demo.cores", lambda: 2)
    assert main(["demo", "--out", str(tmp_path / "g")]) == 2
    assert calls[-1]["workers"] == 2  # one run per core on 2 cores
    monkeypatch.setattr("attnyolo.experiments.demo.cores", lambda: 64)
    assert main(["demo", "--out", str(tmp_path / "g")]) == 2
    assert calls[-1]["workers"] == MAX_DEMO_WORKERS
    assert main(["demo", "--out", str(tmp_path / "g"), "--workers", "1"]) == 2
    assert calls[-1]["workers"] == 1
    capsys.readouterr()
    monkeypatch.undo()
    assert main(["demo", "--out", str(tmp_path / "h"), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "--workers must be an integer >= 1, got 0" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "h").exists()  # refused before anything is written


@pytest.mark.slow
def test_demo_quick_prints_a_verdict_row_per_variant(tmp_path, capsys):
    out = tmp_path / "demo"
    # quick as shipped, on a quarter of the training images so CI stays short; the recipe is otherwise the demo's
    assert main(["demo", "--quick", "--out", str(out), "--resamples", "1000", "fraction=0.25"]) == 0
    text = capsys.readouterr().out
    assert "embedded BCCD" in text and str((out / "report.html").resolve()) in text
    table = [line for line in text.splitlines() if line.startswith("│")]
    for variant in ("baseline", "se@neck", "cbam@neck"):
        rows = [line for line in table if line.split("│")[1].strip() == variant]
        assert len(rows) == 1, variant
        if variant != "baseline":
            assert any(v in rows[0] for v in ("better", "worse", "no measurable", "not engaged")), rows[0]
    assert (out / "report.md").is_file() and (out / "ablate.sqlite").is_file()


@pytest.mark.slow
def test_demo_recipe_keeps_the_control_at_or_above_the_base(tmp_path):
    """The shared recipe fine-tunes the shipped base without damaging it (measured: 0.411 -> 0.428 / 0.4275)."""
    import torch
    from ultralytics import YOLO

    from attnyolo.data import default_dataset
    from attnyolo.data.base_checkpoint import RECORDED, load_base, validate

    start = tmp_path / "start.pt"
    torch.save({"model": load_base(), "train_args": {"task": "detect"}}, start)  # our own file, for YOLO(path)
    yolo = YOLO(str(start))
    yolo.train(data=str(default_dataset()), project=str(tmp_path), name="control", seed=0, **DEMO_RECIPE)
    best = YOLO(str(tmp_path / "control" / "weights" / "best.pt")).model
    assert validate(best)["map50_95"] >= RECORDED["map50_95"]
