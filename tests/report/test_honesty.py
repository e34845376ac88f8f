"""What the report must say honestly (issue 20): per-class Δ = variant − baseline, a warning when the control does
not detect, no "± 0.0000" for one seed, one colour per variant in every figure, progress lines, and which command
reproduces each number."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import matplotlib.colors as mcolors
import pytest
import torch

from attnyolo.cli.app import main
from attnyolo.report import analysis, plots, write_report
from attnyolo.report.analysis import VariantRow, control_warnings, per_class_delta

FIXTURE = Path(__file__).parent / "fixtures" / "grid"
WARNING = "the control (baseline) detects almost nothing"


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    folder = tmp_path / "grid"
    shutil.copytree(FIXTURE, folder)
    return folder


def _sql(folder: Path, sql: str, params: tuple = ()) -> None:
    with sqlite3.connect(folder / "ablate.sqlite") as conn:
        conn.execute(sql, params)


def _row(variant: str, per_class: list[dict], baseline: bool = False) -> VariantRow:
    runs = [{"seed": s, "per_class_ap": pc} for s, pc in enumerate(per_class)]
    return VariantRow(variant, None, "-", list(range(len(runs))), 0, 0.0, 0, 0.0, 1.0, (0, 0), (0, 0), (0, 0),
                      (0, 0), verdict="reference" if baseline else "x", runs=runs)  # fmt: skip


def test_per_class_delta_is_variant_minus_baseline_on_hand_made_rows():
    variant = _row("se", [{"RBC": 0.5, "WBC": 0.2}, {"RBC": 0.7, "WBC": 0.4, "Platelets": 0.1}])
    base = _row("baseline", [{"RBC": 0.4, "WBC": 0.5}, {"RBC": 0.4, "WBC": 0.3}], baseline=True)
    # means over seeds: se RBC 0.6, WBC 0.3, Platelets 0.1 (one seed); baseline RBC 0.4, WBC 0.4, no Platelets
    assert per_class_delta(variant, base) == pytest.approx({"RBC": 0.2, "WBC": -0.1})


def test_report_warns_when_the_control_detects_nothing(grid: Path, capsys):
    _sql(grid, "UPDATE runs SET map50_95 = 0.0042 WHERE is_baseline = 1")
    assert main(["report", str(grid), "--resamples", "200", "--gallery", "0"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert WARNING in out and "0.0042" in out
    md, page = (grid / "report.md").read_text(), (grid / "report.html").read_text()
    assert WARNING in md and WARNING in page
    assert md.index(WARNING) < md.index("## Verdicts")  # before the verdicts, not after them


def test_no_warning_for_a_control_that_detects(grid: Path, capsys):
    a, md, page = write_report(grid, resamples=200, gallery=0, progress=None)
    assert a.baseline.map50_95[0] > 0.1 and control_warnings(a) == []
    assert WARNING not in md.read_text() and "Warning" not in page.read_text()


def test_warning_against_the_start_checkpoints_own_map_on_the_same_data(grid: Path, tmp_path: Path):
    data = tmp_path / "data.yaml"
    data.write_text("path: .\ntrain: images\nval: images\nnames: {0: a}\n")
    base = tmp_path / "base.pt"
    torch.save({"train_args": {"data": str(data), "imgsz": 320}, "train_metrics": {analysis.MAP_COLUMN: 0.9}}, base)
    with sqlite3.connect(grid / "ablate.sqlite") as conn:
        config = json.loads(conn.execute("SELECT config FROM grid").fetchone()[0])
        conn.execute("UPDATE grid SET config = ?", (json.dumps(config | {"weights": str(base), "data": str(data)}),))
    a = analysis.analyse(grid, resamples=100)
    assert a.base_map50_95 == pytest.approx(0.9)
    control = a.baseline.map50_95[0]
    assert 0.01 < control < 0.45  # the fixture's control detects, but scores below half of 0.9
    (warning,) = control_warnings(a)
    assert "less than 50% of the start checkpoint's 0.9000" in warning and str(base) in warning
    other = tmp_path / "other.yaml"  # trained on other data: its mAP says nothing about this data
    other.write_text(data.read_text())
    torch.save({"train_args": {"data": str(other)}, "train_metrics": {analysis.MAP_COLUMN: 0.9}}, base)
    assert analysis.base_reference(a.grid["config"]) is None


def test_a_single_seed_shows_no_spread(grid: Path):
    _sql(grid, "DELETE FROM runs WHERE seed = 1")
    _, md, page = write_report(grid, resamples=200, gallery=0, progress=None)
    text = md.read_text()
    assert "(1 seed)" in text and "± 0.0000" not in text and "± 0.0000" not in page.read_text()


def test_every_figure_gives_a_variant_the_same_colour(grid: Path, monkeypatch):
    figures = {}
    monkeypatch.setattr(plots, "_png", lambda fig: figures.setdefault(fig.axes[0].get_title(), fig) and b"")
    a = analysis.analyse(grid, resamples=200)
    plots.training_curves(a)
    plots.per_class(a)
    curves = figures["Validation mAP50-95 per epoch (mean, ± std over seeds)"].axes[0]
    bars = figures["Per-class difference"].axes[0]
    line_colour = {ln.get_label(): mcolors.to_rgba(ln.get_color()) for ln in curves.get_lines()}
    bar_colour = {c.get_label(): mcolors.to_rgba(c.patches[0].get_facecolor()) for c in bars.containers}
    assert set(bar_colour) == {r.variant for r in a.rows if not r.is_baseline}
    for variant, colour in bar_colour.items():
        assert colour == line_colour[variant], variant
    assert len(set(line_colour.values())) == len(line_colour)


def test_report_prints_progress_lines_on_stderr(grid: Path, capsys):
    assert main(["report", str(grid), "--resamples", "200", "--gallery", "1"]) == 0
    err = capsys.readouterr().err
    for step in ("bootstrap 1/3", "bootstrap 3/3", "figures", "gallery", "written in"):
        assert f"attnyolo report: {step}" in err or step in err, (step, err)


def test_report_names_the_command_behind_each_number(grid: Path):
    command = "attnyolo yolo val model=runs/baseline-s0/weights/best.pt data=d.yaml imgsz=320 batch=32"
    with sqlite3.connect(grid / "ablate.sqlite") as conn:
        config = json.loads(conn.execute("SELECT config FROM runs WHERE run_id = 'baseline-s0'").fetchone()[0])
        config["val"] = {"command": command}
        conn.execute("UPDATE runs SET config = ? WHERE run_id = 'baseline-s0'", (json.dumps(config),))
    _, md, page = write_report(grid, resamples=200, gallery=0, progress=None)
    text = md.read_text()
    assert f"baseline-s0: `{command}`" in text and "se@neck-s1: not recorded" in text
    assert f"<code>{command}</code>" in page.read_text()
    assert "results.csv" in text and "fp16" in text
