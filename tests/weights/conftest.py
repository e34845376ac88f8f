"""Fixtures of the weight tests (this folder only): one tiny trained Ultralytics checkpoint per session."""

from __future__ import annotations

import pytest
from weights_helpers import train_tiny


@pytest.fixture(scope="session")
def trained(tmp_path_factory, default_data):
    """``(best.pt, mid-training last.pt)`` of a real one-epoch Ultralytics training run."""
    return train_tiny(default_data, tmp_path_factory.mktemp("ultralytics-run"))
