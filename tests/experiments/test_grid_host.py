"""The grid's ``host`` key on the Ultralytics side (no YOLOv5 needed): its values, where it is stored, bad input."""

from __future__ import annotations

import re

import pytest
import yaml

from attnyolo.cli import main
from attnyolo.experiments.grid import GridError, resolve
from attnyolo.experiments.run_hosts import grid_host
from attnyolo.experiments.run_hosts.ultralytics import UltralyticsGridHost
from attnyolo.hosts.base import GridHost, HostFormatError


def _grid(data, **extra) -> dict:
    return {"data": str(data), "model": "yolov8n.yaml", "attention": "se", "recipe": {"epochs": 1}, **extra}


def test_default_host_is_ultralytics_and_not_stored(default_data):
    grid = resolve(_grid(default_data), check=False)
    assert grid.host == "ultralytics"
    # a grid written before the host key existed resumes with the same config: the default is not stored
    assert "host" not in grid.config() and "yolov5" not in grid.config()
    host = grid_host(grid.host)
    assert isinstance(host, UltralyticsGridHost) and isinstance(host, GridHost) and host.name == "ultralytics"


def test_explicit_ultralytics_host_gives_the_same_config(default_data):
    assert (
        resolve(_grid(default_data, host="ultralytics"), check=False).config()
        == resolve(_grid(default_data), check=False).config()
    )


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"host": "yolov8"}, "host must be one of ultralytics, yolov5, got 'yolov8'"),
        ({"yolov5": "/some/clone"}, "only host: yolov5 uses"),
        ({"hots": "yolov5"}, "unknown grid keys: hots (did you mean host?)"),
    ],
)
def test_bad_host_values(default_data, extra, expected):
    with pytest.raises(GridError, match=re.escape(expected)):
        resolve(_grid(default_data, **extra), check=False)


def test_original_yolov5_yaml_refused_by_the_ultralytics_host(tmp_path, default_data):
    # an original-format YOLOv5 YAML (anchors:, Detect [nc, anchors]) written by hand: no YOLOv5 install needed
    original = {
        "nc": 3,
        "depth_multiple": 0.33,
        "width_multiple": 0.25,
        "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
        "backbone": [[-1, 1, "Conv", [64, 6, 2, 2]], [-1, 1, "Conv", [128, 3, 2]], [-1, 1, "Conv", [256, 3, 2]]],
        "head": [[[0, 1, 2], 1, "Detect", ["nc", "anchors"]]],
    }
    path = tmp_path / "yolov5n-original.yaml"
    path.write_text(yaml.safe_dump(original))
    with pytest.raises(HostFormatError) as e:
        resolve(_grid(default_data, model=str(path)))
    assert str(path) in str(e.value) and "--host yolov5" in str(e.value)
    assert len(str(e.value).splitlines()) == 1


def test_cli_bad_host_is_one_line(capsys, tmp_path, default_data):
    rc = main(["ablate", "--data", str(default_data), "-m", "yolov8n.yaml", "-a", "se", "--host", "v5",
               "-o", str(tmp_path / "g"), "epochs=1"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "host must be one of ultralytics, yolov5, got 'v5'" in err
    assert not (tmp_path / "g").exists()  # nothing written
