"""`attnyolo insert` and `attnyolo yolo` on a plain Typer app: files, tables, and one-line errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

import attnyolo.graph as g
from attnyolo.cli.args import parse_hparams, parse_where
from attnyolo.cli.insert import default_output, register_commands


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register_commands(app)

    @app.callback()
    def root() -> None:  # a callback keeps the sub-command names on the command line, as in the real CLI
        pass

    return app


def invoke(app, *args, cwd=None):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_insert_writes_the_same_yaml_as_the_python_api(app, tmp_path):
    out = tmp_path / "yolov8n-cbam.yaml"
    result = invoke(app, "insert", "yolov8n.yaml", "cbam", "-o", out)
    assert result.exit_code == 0, result.output
    expected, _ = g.insert("yolov8n.yaml", "cbam")
    assert g.load(out) == {**expected, "scale": "n"}  # the file name carries the scale, as Ultralytics reads it


def test_insert_table_marks_inserted_rows_and_shows_renumbered_inputs(app, tmp_path):
    result = invoke(app, "insert", "yolov8n.yaml", "cbam", "-o", tmp_path / "yolov8n-cbam.yaml")
    lines = result.output.splitlines()
    inserted = [line for line in lines if line.startswith("+")]
    assert len(inserted) == 3 and all("ay_cbam" in line for line in inserted)
    assert [int(line.split()[1]) for line in inserted] == [16, 20, 24]
    assert any("Detect" in line and "[16, 20, 24] <- [15, 18, 21]" in line for line in lines)
    before, after = map(
        lambda s: int(s.replace(",", "")), re.search(r"params ([\d,]+) -> ([\d,]+)", result.output).groups()
    )
    cbam = g.build(g.insert("yolov8n.yaml", "cbam")[0])
    assert after == sum(p.numel() for p in cbam.parameters()) and after > before


def test_insert_to_stdout_prints_only_the_yaml(app):
    result = CliRunner().invoke(app, ["insert", "yolov8n.yaml", "eca", "-o", "-", "--no-table"])
    assert result.exit_code == 0
    assert "  - [-1, 1, ay_eca, []] # 16" in result.stdout
    assert "wrote" not in result.stdout


def test_insert_options_where_after_scale_and_hparams(app, tmp_path):
    out = tmp_path / "m.yaml"
    result = invoke(app, "insert", "yolov8.yaml", "se", "--where", "backbone", "--after", "C2f", "--scale", "s",
                    "--hparam", "rd_ratio=0.5", "-o", out, "--no-table")  # fmt: skip
    assert result.exit_code == 0, result.output
    cfg = g.load(out)
    assert [r for r in cfg["backbone"] if r[2] == "ay_se"] == [[-1, 1, "ay_se", [{"rd_ratio": 0.5}]]] * 2
    assert cfg["scale"] == "s"
    assert "YOLO('m.yaml') builds scale 'n', not 's'" in " ".join(result.output.split())


def test_insert_several_names_chain_them(app, tmp_path):
    out = tmp_path / "m.yaml"
    assert invoke(app, "insert", "yolov8n.yaml", "se,eca", "-w", "15", "-o", out, "--no-table").exit_code == 0
    assert [r[2] for r in g.load(out)["head"][6:8]] == ["ay_se", "ay_eca"]


@pytest.mark.parametrize(
    ("base", "scale", "expected"),
    [
        ("yolov8n.yaml", "n", "yolov8n-cbam.yaml"),
        ("yolov8.yaml", "s", "yolov8s-cbam.yaml"),
        ("yolov8n-seg.yaml", "m", "yolov8m-seg-cbam.yaml"),
        ("yolo11.yaml", "x", "yolo11x-cbam.yaml"),
        ("yolov9t.yaml", "", "yolov9t-cbam.yaml"),
    ],
)
def test_default_output_name_carries_the_scale_ultralytics_will_read(base, scale, expected):
    from attnyolo.graph.yaml_io import guess_scale

    out = default_output(base, scale, ["cbam"])
    assert out.name == expected
    assert guess_scale(out.name) == scale


def test_parse_helpers():
    assert parse_hparams(["rd_ratio=0.25", "act_layer=relu", "use_mlp=true", "k=[3, 5]"]) == {
        "rd_ratio": 0.25,
        "act_layer": "relu",
        "use_mlp": True,
        "k": [3, 5],
    }
    assert parse_where("12,15") == [12, 15] and parse_where("before-head") == "before-head"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["yolov8n.yaml", "cbamm"], "unknown attention 'cbamm'; did you mean cbam"),
        (["yolov8n.yaml", "cbam", "-w", "40"], "layer index 40 is out of range"),
        (["yolov8n.yaml", "cbam", "-w", "middle"], "unknown placement 'middle'"),
        (["yolov8n.yaml", "cbam", "--after", "C3k2"], "no layer of type 'C3k2'"),
        (["yolov8n.yaml", "cbam", "-w", "backbone", "--after", "Concat"], "matches no layer"),
        (["nope/missing.yaml", "cbam"], "'nope/missing.yaml' does not exist"),
        (["yolov8n.yaml", "se", "-p", "ratio=2"], "'se' has no hyper-parameter 'ratio'"),
        (["yolov8n.yaml", "se", "-p", "ratio"], "--hparam takes key=value"),
        (["yolov9e.yaml", "se", "-w", "10"], "does not output one feature map"),
        (["yolov8n.yaml", "se", "--scale", "q"], "unknown scale 'q'"),
    ],
)
def test_bad_input_is_one_line_on_stderr_with_exit_code_2(app, args, message):
    result = CliRunner().invoke(app, ["insert", *args])
    assert result.exit_code == 2
    assert result.stderr.startswith("attnyolo: error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_a_file_that_is_not_yaml_or_not_a_model_is_one_line(app, tmp_path):
    (tmp_path / "bad.yaml").write_text("head: [", encoding="utf-8")
    (tmp_path / "data.yaml").write_text("train: images\nnames: {0: a}\n", encoding="utf-8")
    for name, message in (("bad.yaml", "is not valid YAML"), ("data.yaml", "is not a model YAML")):
        result = CliRunner().invoke(app, ["insert", str(tmp_path / name), "se"])
        assert result.exit_code == 2 and message in result.stderr and result.stderr.count("\n") == 1


def test_yolo_passes_arguments_to_ultralytics_with_the_zoo_registered(tmp_path):
    import cv2

    cfg, _ = g.insert("yolov8n.yaml", "eca")
    model = tmp_path / "yolov8n-eca.yaml"
    g.dump(cfg, model)
    image = tmp_path / "img dir" / "x.jpg"  # a space in the path: arguments must reach Ultralytics intact
    image.parent.mkdir()
    cv2.imwrite(str(image), np.full((64, 64, 3), 127, np.uint8))
    # A fresh process running the real console script: `attnyolo yolo` is Ultralytics' CLI with the zoo known.
    args = ["predict", f"model={model}", f"source={image}", "imgsz=64", "save=False", "device=cpu"]
    exe = Path(sys.executable).with_name("attnyolo")
    result = subprocess.run([exe, "yolo", *args], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "image 1/1" in result.stdout + result.stderr and "x.jpg" in result.stdout + result.stderr


def test_insert_without_identity_start_writes_the_option_into_the_rows(tmp_path):
    out = tmp_path / "yolov8n-cbam.yaml"
    app = typer.Typer()
    register_commands(app)
    app.callback()(lambda: None)
    result = CliRunner().invoke(app, ["insert", "yolov8n.yaml", "cbam", "--no-identity-start", "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = [r for r in g.load(out)["head"] if str(r[2]).startswith("ay_")]
    assert len(rows) == 3
    assert all(r[3] == [{}, {"identity_start": False}] for r in rows)
