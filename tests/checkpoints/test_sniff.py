"""A file given where a checkpoint is expected but holding something else is named, not dumped as hex."""

from __future__ import annotations

import gzip
import re
import zipfile

import pytest
import yaml
from PIL import Image

from attnyolo.checkpoints import CheckpointError, load_checkpoint, load_safetensors_model
from attnyolo.cli import main


def _onnx_model(path):
    """A real one-node ONNX model (written by the onnx package, not by hand)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, producer_name="pytorch"), str(path))
    return path


def _image(path, fmt):
    Image.new("RGB", (8, 8), (200, 10, 10)).save(path, fmt)
    return path


@pytest.mark.parametrize(
    ("name", "make", "kind"),
    [
        ("best.pt", lambda p: _onnx_model(p), "an ONNX model"),  # named .pt: found from its bytes
        ("model.onnx", lambda p: _onnx_model(p), "an ONNX model"),
        ("best.pt", lambda p: _image(p, "PNG"), "a PNG image"),
        ("best.pt", lambda p: _image(p, "JPEG"), "a JPEG image"),
        ("best.pt", lambda p: p.write_bytes(gzip.compress(b"x" * 100)), "a gzip archive"),
        ("w.h5", lambda p: p.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(56)), "an HDF5 file"),
        ("best.pt", lambda p: p.write_text('{"weights": [1, 2]}'), "a JSON file"),
        ("my.yaml", lambda p: p.write_text(yaml.safe_dump({"nc": 3, "backbone": [], "head": []})), "a model YAML"),
        (
            "data.yaml",
            lambda p: p.write_text(yaml.safe_dump({"train": "x", "val": "y", "names": ["a"]})),
            "a data YAML",
        ),
    ],
)
def test_file_of_a_known_other_format_is_named(tmp_path, name, make, kind):
    path = tmp_path / name
    make(path)
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: not a checkpoint but {kind}")):
        load_checkpoint(path)


def test_safetensors_loader_names_the_format_too(tmp_path):
    path = _onnx_model(tmp_path / "model.onnx")
    with pytest.raises(CheckpointError, match=r"model\.onnx: not a checkpoint but an ONNX model"):
        load_safetensors_model(path)


def test_zip_without_data_pkl_lists_what_it_holds(tmp_path):
    with zipfile.ZipFile(tmp_path / "w.pt", "w") as zf:
        zf.writestr("readme.txt", "hello")
        zf.writestr("weights/w.bin", b"\0" * 8)
    with pytest.raises(CheckpointError, match=r"w\.pt: a zip archive but not a torch\.save checkpoint .*readme\.txt"):
        load_checkpoint(tmp_path / "w.pt")


def test_bare_ultralytics_model_yaml_is_named_a_model_yaml_not_a_missing_file(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # yolov8n.yaml does not exist here: Ultralytics ships it
    shipped = r"a model YAML \(shipped with Ultralytics as yolov8\.yaml\)"
    with pytest.raises(CheckpointError, match=rf"yolov8n\.yaml: {shipped}"):
        load_checkpoint("yolov8n.yaml")
    with pytest.raises(CheckpointError, match=rf"yolov8x\.yaml: {shipped}"):
        load_checkpoint("yolov8x.yaml")  # a scaled name resolves to its family's file
    with pytest.raises(CheckpointError, match=r"nothing-like-this\.yaml: file not found"):
        load_checkpoint("nothing-like-this.yaml")


def test_cli_transfer_with_a_model_yaml_as_base_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    rc = main(["transfer", "yolov8n.yaml", "yolov8n.yaml", "-o", "out.pt"])
    err = capsys.readouterr().err
    assert rc == 2 and "yolov8n.yaml: a model YAML" in err and len(err.strip().splitlines()) == 1
