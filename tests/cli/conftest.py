"""Fixtures of the CLI tests: validation images for ``attnyolo viz``."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def val_images(default_data) -> list[Path]:
    """Two validation images of the embedded dataset."""
    return [Path(p) for p in sorted(glob.glob(str(Path(default_data).parent / "images" / "val" / "*.jpg")))[:2]]
