"""`attnyolo insert ... --inside`: the YAML it writes and the per-block parameter growth in its table."""

from __future__ import annotations

import re

import typer
from typer.testing import CliRunner

import attnyolo
from attnyolo.cli.insert import register_commands
from attnyolo.graph.inside import inner_params


def test_insert_inside_writes_the_api_yaml_and_shows_each_block_growth(tmp_path):
    app = typer.Typer()
    register_commands(app)

    @app.callback()
    def root() -> None:  # keeps the sub-command name on the command line, as in the real CLI
        pass

    out = tmp_path / "edited.yaml"
    result = CliRunner().invoke(app, ["insert", "yolov8n.yaml", "cbam", "--inside", "-o", str(out)])
    assert result.exit_code == 0, result.output
    expected, _ = attnyolo.insert("yolov8n.yaml", "cbam", inside=True)
    assert attnyolo.load(out) == expected
    growth = {
        int(m[1]): int(m[2].replace(",", "")) for m in re.finditer(r"^in\s+(\d+).*\(\+([\d,]+)\)$", result.output, re.M)
    }
    assert growth == {i: inner_params(expected, i, "n") for i in (15, 18, 21)}
    before, after = (attnyolo.build(c, scale="n") for c in ("yolov8n.yaml", expected))
    total = sum(p.numel() for p in after.parameters()) - sum(p.numel() for p in before.parameters())
    assert total == sum(growth.values()) and f"(+{total:,})" in result.output
    assert "attention inside layers [15, 18, 21]" in result.output
