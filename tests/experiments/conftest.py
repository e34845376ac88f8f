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
