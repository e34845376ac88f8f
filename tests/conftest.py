"""Suite-wide set-up: one torch thread per xdist worker (2 workers on 2 cores), quiet Ultralytics."""

import os

import pytest
import torch

import attnyolo  # noqa: F401  (configures the offline runtime before any test imports Ultralytics)

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def default_data():
    """Path of the embedded dataset's data YAML (unpacked once per session)."""
    from attnyolo.data import default_dataset

    return default_dataset()
