"""Identity start: an inserted layer is ``x + gamma * (attn(x) - x)`` with ``gamma = 0``, so a model with transferred
base weights computes exactly what the base computes, for every zoo module, in the neck and in the backbone.

The base is YOLOv8n (3 classes) with random weights and perturbed BatchNorm statistics (``model_helpers.build``),
in eval mode; the edited model is built by the engine and filled by :func:`attnyolo.transfer` with no index map
(it finds the map itself). Raw head outputs (decoded boxes and class scores, and the three feature maps the head
reads) are compared with ``torch.equal``: an identity start is exact, not approximately right.

Placement hyper-parameters, from the modules' constraints at yolov8n's 64/128/256 channels: ``sa`` takes
``groups=8`` (its default 64 groups need channels divisible by 128); temporal modules (``needs_frames``) take
``frames=1``, the only clip length a detector can be built with (Ultralytics' stride probe runs a batch of one
image; ``frames=2`` fails there), and their identity start on real two-frame clips is checked on the adapter
alone below. No module is skipped.
"""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from model_helpers import build, yolov8n_cfg

import attnyolo
from attnyolo.graph.ultralytics import adapter_class
from attnyolo.weights import align

# Several modules per family, chosen to cover the three kinds of start (gamma, the module's own identity init,
# and modules whose output is a permuted view): run in the fast loop; every other module runs in the full suite.
FAST = {
    "se", "gct",  # channel
    "sam", "gca",  # spatial
    "tam", "tmhsa",  # temporal
    "sk",  # branch
    "cbam", "sa",  # channel_spatial
    "stnl",  # spatial_temporal
    "sagan", "detr", "nonlocal",  # self_attention
}  # fmt: skip
PAPER_IDENTITY_INIT = {"gca", "sagan", "nonlocal", "gct"}
"""Modules whose paper initialises them as the identity: GC's zero last conv, SAGAN's gamma = 0, the non-local
block's zero BatchNorm gain, GCT's gamma = beta = 0 (so 1 + tanh(0) = 1)."""


def placement_hparams(name: str) -> dict:
    spec = attnyolo.describe(name)
    hparams = {}
    if spec.needs_frames and spec.preset.get("frames") is None:
        hparams["frames"] = 1
    if name == "sa":
        hparams["groups"] = 8
    return hparams


def head_outputs(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        y, extra = model.eval()(x)
    return [y, extra["boxes"], extra["scores"], *extra["feats"]]


@pytest.fixture(scope="module")
def base():
    model = build(yolov8n_cfg(), nc=3)
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    return model, x, head_outputs(model, x)


def cases():
    out = []
    for name in attnyolo.available():
        for where in ("neck", "backbone"):
            marks = () if name in FAST else (pytest.mark.slow,)
            out.append(pytest.param(name, where, marks=marks, id=f"{name}-{where}"))
    return out


@pytest.mark.parametrize(("name", "where"), cases())
def test_identity_start_reproduces_the_base_head_outputs_exactly(base, name, where):
    model, x, expected = base
    cfg, imap = attnyolo.insert("yolov8n.yaml", name, where, check=False, **placement_hparams(name))
    edited = attnyolo.build(cfg, nc=3)
    report = attnyolo.transfer(edited, model, strict=True)

    assert len(report.transferred) == report.source_total == len(model.state_dict()) == 355
    assert report.index_map == dict(enumerate(imap)) and report.index_map_source == "aligned"
    layers = [edited.model[i] for i in imap.inserted]
    assert all(layer.start in ("gamma", "module") for layer in layers)
    assert all(float(layer.gamma.detach()) == 0.0 for layer in layers if layer.start == "gamma")
    got = head_outputs(edited, x)
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True)), f"{name} at {where}"


def test_a_nonzero_gamma_changes_the_outputs(base):
    """The control for the test above: the same model with the attention switched on is not the base."""
    model, x, expected = base
    cfg, imap = attnyolo.insert("yolov8n.yaml", "cbam", "neck")
    edited = attnyolo.build(cfg, nc=3)
    attnyolo.transfer(edited, model)
    with torch.no_grad():
        edited.model[imap.inserted[0]].gamma.fill_(1.0)
    assert not torch.equal(head_outputs(edited, x)[0], expected[0])


@pytest.mark.parametrize("name", [n for n in attnyolo.available() if attnyolo.describe(n).needs_frames])
def test_temporal_adapter_is_the_identity_on_two_frame_clips(name):
    layer = adapter_class(name)(ch=[64], f=-1, hparams={"frames": 2}).eval()
    x = torch.randn(4, 64, 6, 10)  # two clips of two frames
    with torch.no_grad():
        y = layer(x)
    assert torch.equal(y, x)
    if layer.start == "gamma":
        with torch.no_grad():
            assert not torch.equal(layer.attn(x), x)  # the attention itself does work on these clips


@pytest.mark.parametrize("name", attnyolo.available())
def test_gamma_only_where_the_module_does_not_start_as_the_identity_itself(name):
    hparams = placement_hparams(name)
    layer = adapter_class(name)(ch=[64], f=-1, hparams=hparams)
    x = torch.randn(1, 64, 5, 7)  # another input than the adapter's own 8x8 probe
    with torch.no_grad():
        own_identity = torch.equal(attnyolo.create(name, 64, **hparams).eval()(x), x)
    assert layer.start == ("module" if own_identity else "gamma")
    assert (layer.gamma is None) == own_identity
    if name in PAPER_IDENTITY_INIT:
        assert layer.start == "module"


def test_at_step_zero_gamma_gets_a_gradient_and_the_attention_none():
    """ReZero: dL/dgamma = <dL/dy, attn(x) - x> is non-zero, the attention's gradients are scaled by gamma = 0."""
    layer = adapter_class("cbam")(ch=[32], f=-1)
    x = torch.randn(2, 32, 6, 6)
    weights = torch.randn(2, 32, 6, 6)
    (layer(x) * weights).sum().backward()
    assert layer.gamma.grad is not None and float(layer.gamma.grad) != 0.0
    assert all(p.grad is None or not p.grad.any() for p in layer.attn.parameters())

    layer.zero_grad()
    with torch.no_grad():
        layer.gamma.fill_(0.5)
    (layer(x) * weights).sum().backward()
    assert any(p.grad is not None and p.grad.any() for p in layer.attn.parameters())


def test_identity_start_false_writes_the_option_and_gives_plain_attention():
    cfg, imap = attnyolo.insert("yolov8n.yaml", "se", "neck", identity_start=False, rd_ratio=0.25)
    assert cfg["head"][imap.inserted[0] - len(cfg["backbone"])][3] == [{"rd_ratio": 0.25}, {"identity_start": False}]
    layer = attnyolo.build(cfg).model[imap.inserted[0]].eval()
    x = torch.randn(1, 64, 4, 4)
    assert layer.start == "off" and layer.gamma is None
    with torch.no_grad():
        assert torch.equal(layer(x), layer.attn(x))


def test_default_rows_stay_clean():
    cfg, imap = attnyolo.insert("yolov8n.yaml", "eca", "neck")
    assert all(cfg["head"][i - len(cfg["backbone"])][3] == [] for i in imap.inserted)


def test_an_unknown_or_non_boolean_option_is_refused():
    with pytest.raises(attnyolo.graph.BuildError, match="identity_start must be true or false"):
        adapter_class("se")(ch=[16], f=-1, options={"identity_start": "yes"})
    with pytest.raises(attnyolo.graph.BuildError, match=r"unknown adapter option\(s\) \['gama'\]"):
        adapter_class("se")(ch=[16], f=-1, options={"gama": 0})


def test_a_model_pickled_before_gamma_existed_applies_its_attention_fully():
    layer = adapter_class("se")(ch=[16], f=-1).eval()
    old = copy.deepcopy(layer)
    del old._parameters["gamma"], old.__dict__["start"]  # what an adapter pickled before this change holds
    revived = pickle.loads(pickle.dumps(old))
    x = torch.randn(1, 16, 3, 3)
    assert revived.gamma is None and revived.start == "off"
    with torch.no_grad():
        assert torch.equal(revived(x), revived.attn(x))


def test_a_state_dict_without_gamma_loads_with_the_attention_fully_on():
    layer = adapter_class("se")(ch=[16], f=-1)
    old_state = {k: v for k, v in layer.state_dict().items() if k != "gamma"}
    fresh = adapter_class("se")(ch=[16], f=-1)
    fresh.load_state_dict(old_state, strict=True)
    assert float(fresh.gamma.detach()) == 1.0

    partial = adapter_class("se")(ch=[16], f=-1)  # one tensor is not a layer trained without gamma
    partial.load_state_dict(dict(list(old_state.items())[:1]), strict=False)
    assert float(partial.gamma.detach()) == 0.0


# ------------------------------------------------------------------------------------------- index map, found alone


@pytest.fixture(scope="module")
def edited():
    cfg, imap = attnyolo.insert("yolov8n.yaml", "cbam", "neck")
    return cfg, imap


@pytest.mark.parametrize("form", ["model", "state dict", "IndexMap", "list", "mapping"])
def test_transfer_finds_or_accepts_the_index_map_in_every_form(base, edited, form):
    model, _, _ = base
    cfg, imap = edited
    target = attnyolo.build(cfg, nc=3)
    args = {
        "model": (model, None),
        "state dict": (model.state_dict(), None),
        "IndexMap": (model.state_dict(), imap),
        "list": (model.state_dict(), imap.to_list()),
        "mapping": (model.state_dict(), {i: imap[i] for i in range(len(imap))}),
    }[form]
    report = attnyolo.transfer(target, *args, strict=True)
    expected_source = {"model": "aligned", "state dict": "model record"}.get(form, "given")
    assert report.index_map_source == expected_source
    assert report.index_map == dict(enumerate(imap))
    assert len(report.transferred) == 355


def test_a_model_without_attention_rows_keeps_the_keys_of_a_bare_state_dict(base):
    model, _, _ = base
    report = attnyolo.transfer(build(yolov8n_cfg(), nc=3, seed=1), model.state_dict(), strict=True)
    assert report.index_map_source == "none" and report.index_map is None
    assert len(report.transferred) == 355 and all(src == dst for src, dst in report.transferred)


def test_an_edited_source_keeps_its_attention_weights_in_a_further_edited_model(edited):
    cfg, _ = edited
    source = attnyolo.build(cfg, nc=3)
    with torch.no_grad():
        for layer in source.model:
            if hasattr(layer, "gamma") and layer.gamma is not None:
                layer.gamma.fill_(0.3)
    further, _ = attnyolo.insert(cfg, "eca", "backbone")
    target = attnyolo.build(further, nc=3)
    report = attnyolo.transfer(target, source, strict=True)
    assert report.index_map_source == "aligned"
    assert len(report.transferred) == len(source.state_dict())
    moved = [dst for src, dst in report.transferred if src.endswith(".gamma")]
    assert len(moved) == 3 and all(float(target.state_dict()[k]) == pytest.approx(0.3) for k in moved)


def test_align_maps_only_a_target_that_is_the_source_plus_attention_rows(edited):
    cfg, imap = edited
    assert align(attnyolo.load("yolov8n.yaml"), cfg) == imap
    assert align(attnyolo.load("yolov8n.yaml"), attnyolo.insert("yolo11n.yaml", "cbam")[0]) is None
    other = copy.deepcopy(cfg)
    other["head"][-1][0] = [16, 20, 22]  # the head's last input is another layer: not an insertion
    assert align(attnyolo.load("yolov8n.yaml"), other) is None
