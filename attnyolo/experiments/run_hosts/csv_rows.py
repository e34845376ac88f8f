"""Reading a run's CSV files (``results.csv``, the gamma log) into rows of numbers, for the store."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


def read_csv(path: Path) -> list[dict]:
    """The rows of CSV ``path`` (column names and values stripped, numbers as int/float); ``[]`` when absent."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k.strip(): number(v) for k, v in row.items()} for row in rows]


def number(v: str | None) -> Any:
    """``"3"`` -> 3, ``"0.25"`` -> 0.25, anything else as it is (stripped)."""
    if v is None:
        return None
    v = v.strip()
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f
