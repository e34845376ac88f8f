"""Bad input to the YOLOv5 host: one line naming the path or file and what to do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from yolov5_helpers import original_yaml, requires_yolov5

import attnyolo
from attnyolo.cli import main
from attnyolo.graph.errors import BuildError
from attnyolo.hosts.yolov5 import SUPPORTED, YOLOv5HostError
from attnyolo.hosts.yolov5.source import locate

CLONE_FILES = ("models/yolo.py", "models/common.py", "utils/general.py", "train.py", "val.py", "export.py")


def fake_clone(root: Path, yolo_py: str) -> Path:
    for name in CLONE_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    (root / "models" / "yolo.py").write_text(yolo_py)
    return root


def one_line_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("attnyolo: error: ") and len(err.splitlines()) == 1
    return err


def test_missing_clone_folder_is_named(tmp_path, capsys):
    with pytest.raises(YOLOv5HostError, match="no such folder"):
        locate(tmp_path / "nowhere")
    err = one_line_error(
        ["yolov5", "yaml", "yolov5s", "-o", str(tmp_path / "x.yaml"), "--yolov5", str(tmp_path / "nowhere")], capsys
    )
    assert str(tmp_path / "nowhere") in err


def test_folder_that_is_not_a_clone_is_named_with_what_is_missing(tmp_path):
    with pytest.raises(YOLOv5HostError, match=r"not a YOLOv5 clone \(missing models/yolo.py"):
        locate(tmp_path)


def test_clone_of_another_version_names_the_supported_one(tmp_path):
    # v6.2's models/yolo.py: DetectionModel and parse_model(d, ch), but no Segment head (added in v7.0)
    v62 = "class Detect(nn.Module):\n    pass\nclass DetectionModel(BaseModel):\n    pass\n"
    v62 += "def parse_model(d, ch):\n    pass\n"
    with pytest.raises(YOLOv5HostError) as e:
        locate(fake_clone(tmp_path, v62))
    assert "another version" in str(e.value) and SUPPORTED in str(e.value) and str(tmp_path) in str(e.value)


def test_missing_yolov5_install_says_how_to_install():
    code = (
        "import sys; sys.modules['yolov5'] = None\n"  # as if not installed
        "import attnyolo\n"
        "from attnyolo.hosts.yolov5 import locate, YOLOv5HostError\n"
        "try:\n    locate()\nexcept YOLOv5HostError as e:\n    print('ERR', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "ATTNYOLO_YOLOV5": ""},
    )
    line = [x for x in out.stdout.splitlines() if x.startswith("ERR")]
    assert line and "not installed" in line[0] and "pip install --no-deps yolov5==7.0.14" in line[0]


@requires_yolov5
def test_ultralytics_yaml_given_to_the_yolov5_host_is_refused():
    from attnyolo.hosts.yolov5 import build

    with pytest.raises(BuildError, match="Ultralytics-8 YAML"):
        build("yolov8n.yaml")


@requires_yolov5
def test_original_yaml_given_to_the_ultralytics_build_names_attnyolo_build():
    from attnyolo.graph.ultralytics import build

    with pytest.raises(BuildError, match="attnyolo.build"):
        build(str(original_yaml("yolov5n")))
    assert type(attnyolo.build(str(original_yaml("yolov5n")))).__module__ == "yolov5.models.yolo"


@requires_yolov5
def test_cli_init_of_an_ultralytics_yaml_is_one_line(tmp_path, capsys):
    err = one_line_error(["yolov5", "init", "yolov8n.yaml", "-o", str(tmp_path / "x.pt")], capsys)
    assert "Ultralytics-8 YAML" in err


@requires_yolov5
def test_unknown_train_option_is_named(tmp_path, capsys, default_data):
    err = one_line_error(
        ["yolov5", "train", "--data", str(default_data), "--cfg", str(original_yaml("yolov5n")), "epochz=1"], capsys
    )
    assert "epochz" in err and "epochs" in err


@requires_yolov5
def test_missing_weights_file_is_named_not_downloaded(tmp_path, capsys, default_data):
    err = one_line_error(
        ["yolov5", "val", "--weights", str(tmp_path / "yolov5s.pt"), "--data", str(default_data)], capsys
    )
    assert str(tmp_path / "yolov5s.pt") in err
