"""Pickle-free export: safetensors tensors + the architecture YAML in the metadata, rebuilt bit for bit."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from model_helpers import build, edited_cfg, yolov8n_cfg
from safetensors.torch import save_file
from torch import nn
from ultralytics import YOLO

from attnyolo import __version__
from attnyolo.checkpoints import (
    CheckpointError,
    load_checkpoint,
    load_safetensors_model,
    safetensors_metadata,
    save_safetensors,
)


def _tensors(out) -> list[torch.Tensor]:
    """Every tensor of a (nested) model output: predictions, boxes, scores and feature maps."""
    if isinstance(out, torch.Tensor):
        return [out]
    items = out.values() if isinstance(out, dict) else out
    return [t for item in items for t in _tensors(item)]


def _outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return _tensors(model.eval()(x))


def _assert_bit_identical(a: nn.Module, b: nn.Module) -> None:
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    out_a, out_b = _outputs(a, x), _outputs(b, x)
    assert len(out_a) == len(out_b) >= 4
    assert all(torch.equal(ya, yb) for ya, yb in zip(out_a, out_b, strict=True))


def test_round_trip_reproduces_yolov8n_outputs_bit_for_bit(tmp_path):
    model = build(yolov8n_cfg())
    rebuilt = load_safetensors_model(save_safetensors(model, tmp_path / "m.safetensors"))
    assert type(rebuilt) is type(model) and rebuilt is not model
    _assert_bit_identical(model, rebuilt)


def test_round_trip_keeps_an_edited_architecture(tmp_path):
    model = build(edited_cfg([-1, 1, "nn.BatchNorm2d", []]))
    rebuilt = load_safetensors_model(save_safetensors(model, tmp_path / "edited.safetensors"))
    assert isinstance(rebuilt.model[11], nn.BatchNorm2d) and len(rebuilt.model) == 24
    _assert_bit_identical(model, rebuilt)


def test_round_trip_of_a_fused_model(tmp_path):
    model = build(yolov8n_cfg()).fuse(verbose=False)
    rebuilt = load_safetensors_model(save_safetensors(model, tmp_path / "fused.safetensors"))
    assert rebuilt.is_fused()
    _assert_bit_identical(model, rebuilt)


def test_round_trip_of_a_trained_half_precision_model(tmp_path, trained):
    best, _ = trained
    model = load_checkpoint(best)["model"]  # Ultralytics stores the final model in fp16
    rebuilt = load_safetensors_model(save_safetensors(model, tmp_path / "best.safetensors"))
    assert next(rebuilt.parameters()).dtype == torch.float16
    own, back = model.state_dict(), rebuilt.state_dict()
    assert own.keys() == back.keys() and all(torch.equal(own[k], back[k]) for k in own)
    assert rebuilt.names == {0: "RBC", 1: "WBC", 2: "Platelets"}


def test_metadata_holds_yaml_names_and_version_and_no_pickle(tmp_path):
    yolo = YOLO("yolov8n.yaml")  # a YOLO object is accepted as well as its model
    path = save_safetensors(yolo, tmp_path / "y.safetensors")
    meta = safetensors_metadata(path)
    assert meta["format"] == "attnyolo.model" and meta["attnyolo_version"] == __version__
    assert yaml.safe_load(meta["model_yaml"]) == yolo.model.yaml
    assert meta["task"] == "detect" and meta["nc"] == "80" and len(json.loads(meta["names"])) == 80
    assert b"\x80\x02" not in path.read_bytes()[: 8 + int.from_bytes(path.read_bytes()[:8], "little")]


def test_malicious_activation_in_the_yaml_is_refused_before_building(tmp_path):
    marker = tmp_path / "pwned"
    model = build(yolov8n_cfg())
    model.yaml["activation"] = f"__import__('pathlib').Path({str(marker)!r}).write_text('x') or nn.SiLU()"
    path = save_safetensors(model, tmp_path / "evil.safetensors")
    with pytest.raises(CheckpointError, match=r"evil\.safetensors: refused model YAML: activation"):
        load_safetensors_model(path)
    assert not marker.exists()


def test_literal_activation_in_the_yaml_is_accepted(tmp_path):
    cfg = yolov8n_cfg()
    cfg["activation"] = "nn.LeakyReLU(0.1)"
    model = build(cfg)
    rebuilt = load_safetensors_model(save_safetensors(model, tmp_path / "leaky.safetensors"))
    assert isinstance(rebuilt.model[0].act, nn.LeakyReLU)
    _assert_bit_identical(model, rebuilt)


def test_yaml_layer_that_names_a_function_is_refused(tmp_path):
    model = build(yolov8n_cfg())
    model.yaml["head"][0] = [-1, 1, "torch_load", ["/some/other.pt"]]  # a global of ultralytics.nn.tasks
    path = save_safetensors(model, tmp_path / "fn.safetensors")
    with pytest.raises(CheckpointError, match=r"layer 10: module 'torch_load' is neither an Ultralytics"):
        load_safetensors_model(path)


def test_safetensors_without_model_yaml_cannot_be_rebuilt(tmp_path):
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match=r"plain\.safetensors: no model_yaml in the safetensors metadata"):
        load_safetensors_model(tmp_path / "plain.safetensors")


def test_tensors_of_another_class_count_are_reported(tmp_path):
    model = build(yolov8n_cfg(), nc=3)
    meta = safetensors_metadata(save_safetensors(model, tmp_path / "m.safetensors"))
    wrong = {k: v.contiguous() for k, v in build(yolov8n_cfg(), nc=5).state_dict().items()}
    save_file(wrong, str(tmp_path / "wrong.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match=r"wrong\.safetensors: the tensors do not fit .*other shape"):
        load_safetensors_model(tmp_path / "wrong.safetensors")


def test_pt_checkpoint_given_to_the_safetensors_loader_is_named(tmp_path, trained):
    best, _ = trained
    with pytest.raises(CheckpointError, match=r"best\.pt: a \.pt checkpoint, not a safetensors model"):
        load_safetensors_model(best)
