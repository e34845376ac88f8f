"""Fixtures of the ablation tests: one tiny grid, run once per session by the local executor."""

from __future__ import annotations

import pytest
from grid_helpers import tiny_grid


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
