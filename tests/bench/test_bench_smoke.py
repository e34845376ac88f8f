"""Smoke test of the module benchmark (the benchmark itself is run by hand, not by the suite)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from attnyolo.bench.modules import run

ROOT = Path(__file__).resolve().parents[2]


def test_quick_benchmark_of_se_prints_a_table_with_its_timm_reference():
    env = {**os.environ, "COLUMNS": "200"}
    out = subprocess.run(
        [sys.executable, "-m", "attnyolo.bench", "modules", "--quick", "--only", "se"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "torch threads" in text
    row = next(line for line in text.splitlines() if line.strip("│ ").startswith("se "))
    assert "SEModule" in row and "yes" in row  # timm's SEModule built, weights copied, same output
    assert "time ours/ref: median" in text and "time ours/floor: median" in text


def test_only_with_an_unknown_name_is_refused():
    with pytest.raises(ValueError, match="not_a_module"):
        run(["not_a_module"])
