"""Fixtures of the ablation tests: one tiny grid, run once per session by the local executor."""

from __future__ import annotations

import pytest


def tiny_grid(data) -> dict:
    """Baseline + 2 variants (se, eca in the neck) x 2 seeds x 1 epoch at 64 px on half of the embedded data."""
    return {
        "data": str(data),
        "model": "yolov8n.yaml",
        "attention": ["se", "eca"],
        "where": "neck",
        "seeds": 2,
        "recipe": {"epochs": 1, "imgsz": 64, "batch": 16, "workers": 0, "device": "cpu", "plots": False,
                   "fraction": 0.5},
    }  # fmt: skip


@pytest.fixture(scope="session")
def grid_config(default_data) -> dict:
    return tiny_grid(default_data)


@pytest.fixture(scope="session")
def clean_grid(grid_config, tmp_path_factory):
    """The tiny grid run to the end by the local executor in this process: its folder."""
    from attnyolo.experiments import ablate

    folder = tmp_path_factory.mktemp("clean") / "grid"
    ablate(grid_config, out=folder).close()
    return folder


def one_class_copy(data, folder):
    """The embedded data as a 1-class dataset (every box labelled class 0, ``cell``): images linked, labels
    rewritten, so a 3-class base meets a class-count change on real images."""
    import os
    from pathlib import Path

    import yaml

    src = Path(data).parent
    for split in ("train", "val"):
        (folder / "images").mkdir(parents=True, exist_ok=True)
        os.symlink(src / "images" / split, folder / "images" / split)
        labels = folder / "labels" / split
        labels.mkdir(parents=True)
        for txt in (src / "labels" / split).glob("*.txt"):
            rows = [line.split() for line in txt.read_text().splitlines() if line.strip()]
            (labels / txt.name).write_text("".join(" ".join(["0", *r[1:]]) + "\n" for r in rows))
    out = folder / "data.yaml"
    out.write_text(yaml.safe_dump({"path": str(folder), "train": "images/train", "val": "images/val",
                                   "names": {0: "cell"}}))  # fmt: skip
    return out


@pytest.fixture(scope="session")
def one_class_data(default_data, tmp_path_factory):
    return one_class_copy(default_data, tmp_path_factory.mktemp("one-class"))
