"""Original YOLOv5 YAMLs edited by attnyolo build with YOLOv5's own Model; every base tensor transfers; the identity
start reproduces YOLOv5's own forward bit for bit."""

from __future__ import annotations

import pytest
import torch
from yolov5_helpers import original_yaml, requires_yolov5

import attnyolo
from attnyolo.graph import output_channels
from attnyolo.graph.ultralytics import AttentionLayer

pytestmark = requires_yolov5

BASES = ("yolov5n", "yolov5s")
PLACES = ("neck", "backbone")
MODULES = ("se", "cbam", "coord")


def attention_inputs(model: torch.nn.Module, x: torch.Tensor) -> dict[int, tuple]:
    """``{layer index: (input shape, output shape)}`` of every attention layer, seen by forward hooks."""
    seen: dict[int, tuple] = {}
    hooks = [
        layer.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, (tuple(i[0].shape), tuple(o.shape))))
        for k, layer in enumerate(model.model)
        if isinstance(layer, AttentionLayer)
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("where", PLACES)
@pytest.mark.parametrize("base", BASES)
def test_edited_original_yaml_builds_with_yolov5_model_and_starts_as_the_base(base, where, module, base_checkpoints):
    cfg, index_map = attnyolo.insert(str(original_yaml(base)), module, where=where)
    model = attnyolo.build(cfg)
    assert type(model).__module__ == "yolov5.models.yolo" and type(model).__name__ == "DetectionModel"

    ckpt = attnyolo.load_checkpoint(base_checkpoints[base])  # safe load of YOLOv5's own file
    reference = ckpt["model"].float().eval()
    inserted = [i for i, layer in enumerate(model.model) if isinstance(layer, AttentionLayer)]
    assert inserted == sorted(set(range(len(model.model))) - set(index_map.old_to_new))

    # anchors and Detect intact: same anchors, strides and outputs layout as YOLOv5's own model of the base YAML
    head, base_head = model.model[-1], reference.model[-1]
    assert torch.equal(head.anchors, base_head.anchors.float()) and torch.equal(model.stride, reference.stride)
    mapped = [index_map.old_to_new[j] for j in base_head.f]
    assert head.f == ([j + 1 for j in mapped] if where == "neck" else mapped)  # neck: Detect reads the attentions
    if where == "neck":
        assert head.f == inserted

    # channels: the engine's prediction, the adapter's, and what flows through the layer agree
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    predicted = output_channels(cfg)
    for i, (shape_in, shape_out) in attention_inputs(model.eval(), x).items():
        assert shape_in == shape_out
        assert shape_in[1] == model.model[i].channels == predicted[i] == predicted[i - 1]

    report = attnyolo.transfer(model, base_checkpoints[base])
    assert len(report.transferred) == report.source_total == len(reference.state_dict())
    assert not report.skipped
    state = model.state_dict()
    for old_key, new_key in report.transferred:
        assert torch.equal(state[new_key], reference.state_dict()[old_key].float()), new_key

    with torch.no_grad():
        ours, theirs = model.eval()(x)[0], reference(x)[0]
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize(
    "scale", ["n", "s", "m", pytest.param("l", marks=pytest.mark.slow), pytest.param("x", marks=pytest.mark.slow)]
)
def test_one_edited_yaml_builds_at_every_scale_with_the_channels_of_that_scale(scale):
    cfg, _ = attnyolo.insert(str(original_yaml("yolov5s")), "cbam", where="neck")
    model = attnyolo.build(cfg, scale=scale)
    multiples = {"n": 0.25, "s": 0.5, "m": 0.75, "l": 1.0, "x": 1.25}
    detect_inputs = [layer.in_channels for layer in model.model[-1].m]
    assert detect_inputs == [int(c * multiples[scale]) for c in (256, 512, 1024)]
    x = torch.rand(1, 3, 64, 64)
    for i, (shape_in, _) in attention_inputs(model.eval(), x).items():
        assert shape_in[1] == model.model[i].channels
    assert [shape[1] for shape, _ in attention_inputs(model, x).values()] == detect_inputs


def test_start_checkpoint_keeps_every_tensor_in_yolov5s_own_train_load(tmp_path, base_checkpoints):
    """What YOLOv5's train.py does with ``--weights start.pt``: its intersect_dicts against the model it builds."""
    from attnyolo.cli import main
    from attnyolo.graph import dump
    from attnyolo.hosts.yolov5 import locate
    from attnyolo.hosts.yolov5.entry import allow_file

    edited = tmp_path / "yolov5n-cbam.yaml"
    dump(attnyolo.insert(str(original_yaml("yolov5n")), "cbam", where="neck")[0], edited)
    start = tmp_path / "start.pt"
    assert main(["transfer", str(edited), str(base_checkpoints["yolov5n"]), "-o", str(start)]) == 0

    code = locate()
    allow_file(start)  # what `attnyolo yolov5 train --weights start.pt` does before YOLOv5 loads it
    ckpt = torch.load(start, map_location="cpu")  # YOLOv5's call, weights_only by default
    intersect = code.module("utils.general").intersect_dicts
    csd = ckpt["model"].float().state_dict()
    # without --cfg YOLOv5 builds ckpt['model'].yaml and excludes nothing: every tensor is kept
    model = code.yolo.Model(ckpt["model"].yaml, ch=3, nc=None)
    assert len(intersect(csd, model.state_dict(), exclude=[])) == len(csd) == len(model.state_dict())
    # with --cfg edited.yaml YOLOv5 excludes only the anchors by name (it takes them from the cfg: the same values)
    model = code.yolo.Model(str(edited), ch=3, nc=None)
    kept = intersect(csd, model.state_dict(), exclude=["anchor"])
    assert set(csd) - set(kept) == {f"model.{len(model.model) - 1}.anchors"}
    assert torch.equal(model.model[-1].anchors, ckpt["model"].model[-1].anchors.float())
