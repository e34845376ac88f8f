"""Loading models by path, bare Ultralytics name or dict; dumping them back; one-line errors for bad files."""

from __future__ import annotations

import pytest
import yaml
from graph_helpers import FIXTURES

import attnyolo.graph as g
from attnyolo.graph.yaml_io import dump, load, resolve_name, ultralytics_models_dir


@pytest.mark.parametrize(
    ("name", "file", "scale"),
    [
        ("yolov8n.yaml", "v8/yolov8.yaml", "n"),
        ("yolo11s.yaml", "11/yolo11.yaml", "s"),
        ("yolov5nu.yaml", "v5/yolov5.yaml", "n"),
        ("yolov8s-seg.yaml", "v8/yolov8-seg.yaml", "s"),
        ("yolov8n6.yaml", "v8/yolov8-p6.yaml", "n"),
        ("yolov10n.yaml", "v10/yolov10n.yaml", "n"),
        ("yolov9t.yaml", "v9/yolov9t.yaml", None),
        ("rtdetr-l.yaml", "rt-detr/rtdetr-l.yaml", None),
    ],
)
def test_bare_names_resolve_like_ultralytics(name, file, scale):
    from ultralytics.nn.tasks import yaml_model_load

    d = load(name)
    assert resolve_name(name) == ultralytics_models_dir() / file
    assert d.get("scale") == scale
    theirs = yaml_model_load(name)  # Ultralytics' own resolution, as the reference
    assert {k: v for k, v in theirs.items() if k not in ("yaml_file", "scale")} == {
        k: v for k, v in d.items() if k != "scale"
    }
    assert (theirs["scale"] or None) == d.get("scale")


def test_a_dict_is_copied_not_referenced():
    src = load("yolov8n.yaml")
    d = load(src)
    d["backbone"][0][3][0] = 1
    assert src["backbone"][0][3][0] == 64


def test_scale_argument_overrides_the_name():
    assert load("yolov8n.yaml", scale="m")["scale"] == "m"


@pytest.mark.parametrize("name", ["yolov8n.yaml", "yolov9e.yaml", "rtdetr-l.yaml", "yolov5s.yaml"])
def test_dump_then_load_gives_an_equal_dict(tmp_path, name):
    d = load(FIXTURES / name) if name == "yolov5s.yaml" else load(name)
    edited, _ = g.insert(d, "se")
    path = tmp_path / "m.yaml"
    dump(edited, path)
    assert load(path) == edited


def test_dumped_rows_are_one_per_line_with_their_index():
    text = dump(load("yolov8n.yaml"))
    assert "  - [-1, 1, Conv, [64, 3, 2]] # 0\n" in text
    assert "  - [[15, 18, 21], 1, Detect, [nc]] # 22\n" in text


def test_dump_is_readable_by_ultralytics_yaml_loader(tmp_path):
    from ultralytics.utils import YAML

    edited, _ = g.insert("yolov8n.yaml", "cbam", rd_ratio=0.25)
    path = tmp_path / "m.yaml"
    dump(edited, path)
    assert {k: v for k, v in YAML.load(path).items() if k != "yaml_file"} == edited


def test_missing_file_is_a_one_line_not_found_error(tmp_path):
    with pytest.raises(g.ModelYAMLNotFoundError, match="does not exist") as e:
        load(str(tmp_path / "nope.yaml"))
    assert isinstance(e.value, FileNotFoundError)


def test_unknown_bare_name_lists_close_shipped_names():
    with pytest.raises(
        g.ModelYAMLNotFoundError, match=r"'yolov8x-sgm.yaml' is neither a file.*close names: yolov8-seg"
    ):
        load("yolov8x-sgm.yaml")


def test_a_file_that_is_not_yaml_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("backbone: [[-1, 1, Conv\nhead: {", encoding="utf-8")
    with pytest.raises(g.ModelYAMLError, match=r"is not valid YAML at line \d+") as e:
        load(bad)
    assert "\n" not in str(e.value)


def test_a_binary_file_is_refused(tmp_path):
    bad = tmp_path / "img.yaml"
    bad.write_bytes(bytes(range(256)))
    with pytest.raises(g.ModelYAMLError, match="not"):
        load(bad)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"nc": 80, "head": []}, "no 'backbone'"),
        ({"nc": 80, "backbone": [[-1, 1, "Conv", [16]]]}, "no 'head'"),
        ({"backbone": [[-1, 1, "Conv"]], "head": [[-1, 1, "Detect", []]]}, r"layer 0 \(backbone\) must be"),
        ({"backbone": [["a", 1, "Conv", [16]]], "head": [[-1, 1, "Detect", []]]}, "'from' must be an int"),
        ({"backbone": [[-1, 1, "Conv", [16]]], "head": [[3, 1, "Detect", []]]}, "'from' 3 points to a later"),
        ({"backbone": [[-1, 1, "Conv", [16]]], "head": [[-5, 1, "Detect", []]]}, "before the first layer"),
        ({"backbone": [[-1, 0, "Conv", [16]]], "head": [[-1, 1, "Detect", []]]}, "repeats must be a positive"),
        ({"backbone": [[-1, 1, "Conv", 16]], "head": [[-1, 1, "Detect", []]]}, "args must be a list"),
        ({"backbone": [[-1, 1, 7, [16]]], "head": [[-1, 1, "Detect", []]]}, "module must be a name"),
    ],
)
def test_not_a_model_gives_a_one_line_error(cfg, message):
    with pytest.raises(g.ModelYAMLError, match=message) as e:
        load(cfg)
    assert "\n" not in str(e.value)


def test_a_yaml_list_is_not_a_model(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(g.ModelYAMLError, match="not a model YAML: its top level is a list, not a mapping"):
        load(path)


def test_a_python_object_that_is_no_model_source_is_refused():
    with pytest.raises(g.ModelYAMLError, match="a model is a path, a bare Ultralytics name or a dict, not int"):
        load(3)


def test_yaml_file_that_is_not_a_model_names_the_file(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump({"train": "images/train", "names": {0: "a"}}), encoding="utf-8")
    with pytest.raises(g.ModelYAMLError, match=r"data.yaml' is not a model YAML: no 'backbone' or 'head'"):
        load(path)
