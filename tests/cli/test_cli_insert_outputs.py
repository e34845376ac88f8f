"""`attnyolo insert` output files: named after the placement, never overwritten without --force (issue 11)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

import attnyolo.graph as g
from attnyolo.cli.insert import default_output, register_commands


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register_commands(app)

    @app.callback()
    def root() -> None:
        pass

    return app


@pytest.mark.parametrize(
    ("base", "scale", "where", "after", "expected"),
    [
        ("yolov8n.yaml", "n", None, None, "yolov8n-cbam.yaml"),
        ("yolov8n.yaml", "n", "neck", None, "yolov8n-cbam.yaml"),
        ("yolov8n.yaml", "n", "backbone", None, "yolov8n-cbam-backbone.yaml"),
        ("yolov8n.yaml", "n", "before_head", None, "yolov8n-cbam-before-head.yaml"),
        ("yolov8n.yaml", "n", "12,15", None, "yolov8n-cbam-12-15.yaml"),
        ("yolov8.yaml", "s", "backbone", "C2f", "yolov8s-cbam-backbone-after-C2f.yaml"),
        ("yolov8n-seg.yaml", "m", "12", None, "yolov8m-seg-cbam-12.yaml"),
    ],
)
def test_default_output_names_the_placement_and_keeps_the_scale(base, scale, where, after, expected):
    from attnyolo.graph.yaml_io import guess_scale

    out = default_output(base, scale, ["cbam"], where, after)
    assert out.name == expected and guess_scale(out.name) == scale


def test_two_placements_write_two_files_by_default(app, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for where in ("neck", "backbone"):
        result = runner.invoke(app, ["insert", "yolov8n.yaml", "cbam", "-w", where, "--no-table"])
        assert result.exit_code == 0, result.output
    assert g.load(tmp_path / "yolov8n-cbam.yaml") == {**g.insert("yolov8n.yaml", "cbam", "neck")[0], "scale": "n"}
    backbone = g.load(tmp_path / "yolov8n-cbam-backbone.yaml")
    assert backbone == {**g.insert("yolov8n.yaml", "cbam", "backbone")[0], "scale": "n"}


def test_an_existing_output_is_kept_without_force(app, tmp_path):
    out = tmp_path / "mine.yaml"
    out.write_text("my notes\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["insert", "yolov8n.yaml", "cbam", "-o", str(out)])
    assert result.exit_code == 2
    assert result.stderr == f"attnyolo: error: {out} exists; pass --force to overwrite it, or -o another name\n"
    assert out.read_text(encoding="utf-8") == "my notes\n"
    result = CliRunner().invoke(app, ["insert", "yolov8n.yaml", "cbam", "-o", str(out), "--force", "--no-table"])
    assert result.exit_code == 0, result.output
    assert g.load(out)["attnyolo"]["inserted"] == [16, 20, 24]
