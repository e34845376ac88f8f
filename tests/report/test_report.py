"""attnyolo report on the committed fixture grid: both files, decodable PNGs, every variant; bad inputs."""

from __future__ import annotations

import base64
import io
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from attnyolo.cli.app import main

FIXTURE = Path(__file__).parent / "fixtures" / "grid"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    folder = tmp_path / "grid"
    shutil.copytree(FIXTURE, folder)
    return folder


def _variants(folder: Path) -> list[str]:
    with sqlite3.connect(folder / "ablate.sqlite") as conn:
        return [r[0] for r in conn.execute("SELECT DISTINCT variant FROM runs WHERE state = 'done'")]


def test_report_writes_md_and_self_contained_html(grid: Path, capsys):
    assert main(["report", str(grid), "--resamples", "2000"]) == 0
    out = capsys.readouterr().out
    md = (grid / "report.md").read_text()
    page = (grid / "report.html").read_text()
    variants = _variants(grid)
    assert len(variants) == 4
    for v in variants:
        assert v in md and v in page and v in out
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 5  # forest, accuracy vs cost, curves, per class, gamma
    from PIL import Image

    for data in images:
        raw = base64.b64decode(data, validate=True)
        assert raw.startswith(PNG_MAGIC)
        Image.open(io.BytesIO(raw)).verify()  # a complete, decodable PNG
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing fetched from elsewhere
    for name in re.findall(r"\]\((report_figures/[^)]+\.png)\)", md):
        assert (grid / name).read_bytes().startswith(PNG_MAGIC)
    assert "wall time" in page and "321 s" in page  # the recipe/versions/machine/wall time section
    assert str(grid / "report.html") in out


def test_report_rows_are_sorted_by_delta_and_carry_verdicts(grid: Path):
    from attnyolo.report import write_report

    a, _, _ = write_report(grid, resamples=1000)
    deltas = [r.delta for r in a.rows]
    assert deltas == sorted(deltas, reverse=True)
    assert a.baseline.delta == 0.0
    for r in a.rows:
        if not r.is_baseline:
            assert r.low <= r.high
            assert r.verdict in ("better", "worse", "no measurable difference at this budget")
            assert r.gamma_moved > 0  # the fixture's gamma logs moved


def test_report_on_folder_without_database(tmp_path: Path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("attnyolo: error:") and "ablate.sqlite" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_report_on_empty_database(grid: Path, capsys):
    with sqlite3.connect(grid / "ablate.sqlite") as conn:
        conn.execute("DELETE FROM runs")
    assert main(["report", str(grid)]) == 2
    err = capsys.readouterr().err
    assert "holds no runs" in err and len(err.strip().splitlines()) == 1


def test_report_on_older_schema(grid: Path, capsys):
    with sqlite3.connect(grid / "ablate.sqlite") as conn:
        conn.execute("PRAGMA user_version = 0")
    assert main(["report", str(grid)]) == 2
    err = capsys.readouterr().err
    assert "schema version 0" in err and len(err.strip().splitlines()) == 1
    assert not (grid / "report.html").exists()
