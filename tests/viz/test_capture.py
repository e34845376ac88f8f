"""attention_maps: one module of every family gives maps of the documented shape and range, that follow the
input, and capturing leaves the model's outputs unchanged."""

from __future__ import annotations

import pytest
import torch
from viz_helpers import randomised_detector

from attnyolo.viz import attention_maps
from attnyolo.viz.errors import VizError
from attnyolo.viz.images import prepare

IMGSZ = 128
# (family, zoo name, hyper-parameters, kinds expected at each layer)
FAMILIES = [
    ("channel", "se", {}, {"channel"}),
    ("spatial", "sam", {}, {"spatial"}),
    ("channel_spatial", "cbam", {}, {"channel", "spatial"}),
    ("branch", "sk", {}, {"branch"}),
    ("self_attention", "mhsa", {}, {"self-attention"}),
    ("temporal", "tmhsa", {"frames": 1}, {"temporal"}),
    ("spatial_temporal", "stnl", {"frames": 1}, {"self-attention"}),
]
FEATURE = {"16": (64, IMGSZ * 3 // 4 // 8, IMGSZ // 8), "20": (128, 6, 8), "24": (256, 3, 4)}  # 96x128 input


def _kind(key: str) -> str:
    return key.split("(", 1)[1].split(":")[0].rstrip(")")


@pytest.fixture(scope="module", params=FAMILIES, ids=[f[0] for f in FAMILIES])
def family(request):
    fam, name, hparams, kinds = request.param
    return fam, name, randomised_detector(name, **hparams), kinds


def test_every_inserted_layer_gives_maps_of_the_documented_shape_and_range(family, val_images):
    _, name, model, kinds = family
    maps = attention_maps(model, val_images[0], imgsz=IMGSZ)
    assert {k.split()[0] for k in maps} == {"16", "20", "24"}
    assert {_kind(k) for k in maps} == kinds
    for key, v in maps.items():
        c, h, w = FEATURE[key.split()[0]]
        kind = _kind(key)
        assert torch.isfinite(v).all()
        if kind == "channel":
            assert v.shape == (c,)
        elif kind == "spatial":
            assert v.shape == (h, w)
        elif kind == "branch":
            assert v.shape[1] == c
            torch.testing.assert_close(v.sum(0), torch.ones(c))  # softmax over branches, per channel
        elif kind == "self-attention":
            assert v.shape in {(h, w), ((h + 1) // 2, (w + 1) // 2)}
            torch.testing.assert_close(v.sum(), torch.tensor(1.0))  # one softmax row
        elif kind == "temporal":
            assert v.shape == (1, 1) and float(v) == pytest.approx(1.0)  # a one-frame clip attends to itself
        if kind in {"channel", "spatial"}:
            assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0  # sigmoid gates


def test_maps_follow_the_input(family, val_images):
    fam, _, model, _ = family
    if fam == "temporal":
        pytest.skip("in a detector a temporal module sees one-frame clips, whose attention is exactly 1")
    a = attention_maps(model, val_images[0], imgsz=IMGSZ)
    b = attention_maps(model, val_images[1], imgsz=IMGSZ)
    changed = [k for k in a if a[k].shape == b[k].shape and not torch.equal(a[k], b[k])]
    assert changed, "every map was identical for two different images"
    assert all(float(v.max() - v.min()) > 0 for k, v in a.items() if _kind(k) != "temporal")


def test_capture_leaves_the_outputs_unchanged(family, val_images):
    _, _, model, _ = family
    x = prepare(val_images[0], IMGSZ).tensor
    with torch.no_grad():
        before = model(x)[0].clone()
        attention_maps(model, x)
        after = model(x)[0]
    assert torch.equal(before, after)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_a_layer_without_attention_names_the_layers_that_have_it(val_images):
    model = randomised_detector("se")
    with pytest.raises(VizError, match=r"\['7'\].*\['16', '20', '24'\]"):
        attention_maps(model, val_images[0], layers=["7"], imgsz=IMGSZ)


def test_the_query_position_moves_the_self_attention_map(val_images):
    model = randomised_detector("mhsa")
    a = attention_maps(model, val_images[0], query=(0.1, 0.1), imgsz=IMGSZ)["16 mhsa (self-attention)"]
    b = attention_maps(model, val_images[0], query=(0.9, 0.9), imgsz=IMGSZ)["16 mhsa (self-attention)"]
    assert not torch.equal(a, b)


@pytest.mark.parametrize(
    "image, match",
    [("missing.jpg", "missing.jpg: no such file"), ("not-an-image.jpg", "not-an-image.jpg: not a readable image")],
)
def test_bad_images_are_named(tmp_path, image, match):
    path = tmp_path / image
    if image.startswith("not"):
        path.write_text("hello")
    with pytest.raises(VizError, match=match):
        prepare(path)


def test_every_inserted_zoo_module_gives_interpretable_maps(val_images):
    """Every zoo module that fits YOLOv8n's neck (non-temporal, default hyper-parameters) is captured without
    an uninterpretable gate: the report's gallery runs on any grid."""
    import attnyolo as ay
    from attnyolo.graph.errors import GraphError

    failures = {}
    for name in ay.available():
        spec = ay.describe(name)
        if spec.needs_frames:
            continue
        try:
            cfg, _ = ay.insert("yolov8n.yaml", name)
            model = ay.build(cfg, nc=3).eval()
        except (GraphError, ValueError):
            continue  # a channel constraint at 64 channels: refused by the engine, not a viz matter
        try:
            maps = attention_maps(model, val_images[0], imgsz=64)
        except VizError as e:
            failures[name] = str(e)
            continue
        if not maps:
            failures[name] = "no map captured"
    assert not failures, failures


def test_a_yolo_object_is_unwrapped_to_its_detection_model():
    """``YOLO`` is itself an ``nn.Module``: the viz must still reach the DetectionModel inside it."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    from attnyolo.viz.models import load_model, torch_model

    yolo = YOLO("yolov8n.yaml")
    assert type(torch_model(yolo)) is DetectionModel
    assert type(load_model(yolo)) is DetectionModel
    with pytest.raises(VizError, match="expected a torch model"):
        torch_model("not a model")


def test_gates_pickled_before_kinds_existed_are_read_as_a_fresh_module_declares(val_images):
    """A checkpoint saved before gates declared kinds unpickles gates without ``kind``: viz takes it from a freshly
    built module of the same zoo name and shows the same maps."""
    model = randomised_detector("cbam")
    want = attention_maps(model, val_images[0], imgsz=IMGSZ)
    for m in model.modules():
        if "kind" in vars(m):
            del m.kind  # the class default (None) is what an old pickle gives
    assert all(getattr(m, "kind", None) is None for m in model.modules())
    got = attention_maps(model, val_images[0], imgsz=IMGSZ)
    assert list(got) == list(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
