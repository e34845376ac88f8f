"""Suite-wide set-up: one torch thread per xdist worker (2 workers on 2 cores), quiet Ultralytics, and
reproducible property tests in CI (Hypothesis profile ``ci``, chosen when ``CI`` is set: derandomized, so every
CI run draws the same examples; locally the examples stay random and keep finding new cases)."""

import os

import pytest
import torch
from hypothesis import settings

import attnyolo  # noqa: F401  (configures the offline runtime before any test imports Ultralytics)

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def default_data():
    """Path of the embedded dataset's data YAML (unpacked once per session)."""
    from attnyolo.data import default_dataset

    return default_dataset()
