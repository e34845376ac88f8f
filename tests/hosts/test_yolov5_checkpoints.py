"""YOLOv5 checkpoints (written by YOLOv5's own code) load without running code from the file; hostile ones are
refused with one line naming the file and the refused value, and their payload never runs."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest
import torch
from yolov5_helpers import code, requires_yolov5, yolov5_model

import attnyolo
from attnyolo.checkpoints import CheckpointError
from attnyolo.checkpoints.pickle_scan import scan_pickle, zip_data_pkl
from attnyolo.hosts.yolov5.entry import allow_file

pytestmark = requires_yolov5


class CallsFunction:
    """Unpickles as ``fn(*args)``: what a hostile pickle does."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def as_clone_checkpoint(path: Path, out: Path) -> Path:
    """The same checkpoint as a clone (and every released yolov5s.pt) names it: ``models.yolo.DetectionModel``
    instead of the package's ``yolov5.models.yolo.DetectionModel``. torch.save pickles with protocol 2, where a
    global is the text line ``c<module>\\n<name>\\n``, so the rename is a byte substitution in ``data.pkl``."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/data.pkl"):
                assert b"cyolov5.models." in data
                data = data.replace(b"cyolov5.models.", b"cmodels.")
            dst.writestr(info, data)
    return out


def test_checkpoint_written_by_yolov5_loads_safely_with_its_weights(base_checkpoints):
    path = base_checkpoints["yolov5n"]
    ckpt = attnyolo.load_checkpoint(path)
    assert ckpt["epoch"] == -1 and ckpt["optimizer"] is None and ckpt["ema"] is None  # YOLOv5's strip_optimizer
    model = ckpt["model"]
    assert type(model) is code().yolo.DetectionModel
    reference = yolov5_model("yolov5n")  # the same seed: the weights that were saved (as fp16)
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value.half()), key


def test_checkpoint_naming_top_level_models_loads_as_the_installed_yolov5(base_checkpoints, tmp_path):
    path = as_clone_checkpoint(base_checkpoints["yolov5n"], tmp_path / "clone-format.pt")
    names = scan_pickle(zip_data_pkl(path))[0]  # the globals the file names (torch omits registered ones)
    assert "models.yolo.DetectionModel" in names and not any(n.startswith("yolov5.") for n in names)
    model = attnyolo.load_checkpoint(path)["model"]
    assert type(model) is code().yolo.DetectionModel
    assert torch.equal(
        model.model[0].conv.weight, attnyolo.load_checkpoint(base_checkpoints["yolov5n"])["model"].model[0].conv.weight
    )


def hostile(tmp_path: Path) -> dict[str, tuple[Path, Path, str]]:
    """YOLOv5-format checkpoints that would each create their marker when loaded with a full pickle."""
    model = yolov5_model("yolov5n")
    out = {}
    marker = tmp_path / "system.ran"
    torch.save({"model": model, "opt": CallsFunction(os.system, f"touch {marker}")}, tmp_path / "system.pt")
    out["system"] = (tmp_path / "system.pt", marker, f"{os.system.__module__}.system")

    marker = tmp_path / "constructor.ran"
    cfg = {**model.yaml, "activation": f"exec({f'open({str(marker)!r}, chr(119)).close()'!r}) or nn.SiLU()"}
    torch.save({"model": CallsFunction(type(model), cfg)}, tmp_path / "constructor.pt")
    out["constructor"] = (tmp_path / "constructor.pt", marker, "DetectionModel (called as a constructor")

    marker = tmp_path / "function.ran"  # a YOLOv5 function, not a layer class: outside the allow-list
    increment_path = code().module("utils.general").increment_path  # increment_path(path, mkdir=True) makes a dir
    torch.save({"model": model, "x": CallsFunction(increment_path, marker, True, "", True)}, tmp_path / "function.pt")
    out["function"] = (tmp_path / "function.pt", marker, "increment_path")

    marker = tmp_path / "activation.ran"  # YOLOv5's Model would eval() this string when the YAML is rebuilt
    evil = yolov5_model("yolov5n")
    evil.yaml["activation"] = f"exec({f'open({str(marker)!r}, chr(119)).close()'!r})"
    torch.save({"model": evil}, tmp_path / "activation.pt")
    out["activation"] = (tmp_path / "activation.pt", marker, "exec(")
    return out


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory):
    return hostile(tmp_path_factory.mktemp("yolov5-hostile"))


@pytest.mark.parametrize("name", ["system", "constructor", "function", "activation"])
def test_hostile_yolov5_checkpoint_is_refused_by_every_loader_and_never_runs(hostile_files, name, tmp_path, capsys):
    from attnyolo.cli import main
    from attnyolo.graph import dump

    path, marker, refused = hostile_files[name]
    with pytest.raises(CheckpointError) as e:
        attnyolo.load_checkpoint(path)
    assert str(path) in str(e.value) and refused in str(e.value)
    with pytest.raises(CheckpointError):
        allow_file(path)  # what train/val/export do before YOLOv5's own torch.load
    edited = tmp_path / "edited.yaml"
    dump(attnyolo.insert(str(code().root / "models" / "yolov5n.yaml"), "se")[0], edited)
    assert main(["transfer", str(edited), str(path), "-o", str(tmp_path / "start.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("attnyolo: error: ") and len(err.splitlines()) == 1 and str(path) in err
    assert main(["yolov5", "val", "--weights", str(path), "--data", str(tmp_path / "never-read.yaml")]) == 2
    assert str(path) in capsys.readouterr().err
    assert not marker.exists()


def test_the_hostile_payloads_are_live(hostile_files):
    """A full pickle load (what YOLOv5 did before torch 2.6) runs them: the refusals above stop real attacks."""
    path, marker, _ = hostile_files["system"]
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_trust_loads_a_file_outside_the_allow_list(tmp_path):
    path = tmp_path / "extra.pt"
    torch.save({"model": yolov5_model("yolov5n"), "note": io.BytesIO(b"x")}, path)  # io.BytesIO: not allowed
    with pytest.raises(CheckpointError, match="_io.BytesIO"):
        attnyolo.load_checkpoint(path)
    assert isinstance(attnyolo.load_checkpoint(path, trust=True)["note"], io.BytesIO)
