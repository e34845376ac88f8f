"""Attention inside blocks as YAML edits: the row format, remove/replace, the property, and bad inputs."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import attnyolo
from attnyolo.graph.adapter import AttentionLayer
from attnyolo.graph.errors import GraphError, HyperparameterError, PlacementError, ShapeError
from attnyolo.graph.inside import SUPPORTED, bottlenecks
from attnyolo.graph.inside_syntax import inside_rows, option_of
from attnyolo.graph.layers import layers
from attnyolo.registry import describe

NON_TEMPORAL = [n for n in attnyolo.available() if not describe(n).needs_frames]


def _blocks(cfg: dict) -> list[int]:
    found = []
    for x in layers(cfg)[:-1]:
        try:
            bottlenecks(cfg, x.index)
        except PlacementError:
            continue
        found.append(x.index)
    return found


def test_the_block_row_gets_a_leading_option_and_nothing_else_changes(tmp_path):
    y = attnyolo.load("yolov8n.yaml")
    cfg, _ = attnyolo.insert(y, "cbam", inside=True, rd_ratio=0.25)
    assert inside_rows(cfg) == [15, 18, 21]  # the head's inputs, as where="neck" means for inserted rows
    for a, b in zip(layers(y), layers(cfg), strict=True):
        if b.index in (15, 18, 21):
            assert b.args == [{"inside": "cbam", "rd_ratio": 0.25}, *a.args]
        else:
            assert a == b
    attnyolo.dump(cfg, tmp_path / "edited.yaml")
    assert attnyolo.load(tmp_path / "edited.yaml") == cfg  # the YAML text reads back the same dict


def test_without_attnyolo_hook_ultralytics_fails_loudly_on_such_a_row():
    import ultralytics.nn.tasks as tasks

    attnyolo.register()
    cfg, _ = attnyolo.insert("yolov8n.yaml", "se", inside=True)
    with pytest.raises(TypeError):  # the option dict sits where parse_model reads the output width
        tasks.parse_model.__wrapped__(cfg, 3, verbose=False)


def test_a_yaml_file_builds_with_ultralytics_yolo_after_import_attnyolo(tmp_path):
    from ultralytics import YOLO

    cfg, _ = attnyolo.insert("yolov8n.yaml", "eca", where="backbone", inside=True)
    path = tmp_path / "yolov8n-eca-inside.yaml"
    attnyolo.dump(cfg, path)
    model = YOLO(str(path)).model
    assert all(isinstance(model.model[i].m[0].attn, AttentionLayer) for i in inside_rows(cfg))


def test_replace_swaps_the_inner_module_and_keeps_its_options():
    cfg, _ = attnyolo.insert("yolov8n.yaml", "cbam", inside=True, identity_start=False)
    new = attnyolo.replace(cfg, "cbam", "se", rd_ratio=0.5)
    assert [option_of(layers(new)[i].args) for i in inside_rows(new)] == [
        {"inside": "se", "rd_ratio": 0.5, "identity_start": False}
    ] * 3
    assert attnyolo.replace(cfg, 18, "eca") != cfg and inside_rows(attnyolo.replace(cfg, 18, "eca")) == [15, 18, 21]
    model = attnyolo.build(new)
    assert {type(m).__name__ for m in model.model[15].modules() if isinstance(m, AttentionLayer)} == {"ay_se"}


def test_remove_by_index_or_name_takes_inside_blocks_too():
    y = attnyolo.load("yolov8n.yaml")
    cfg, _ = attnyolo.insert(y, [("eca", "backbone"), ("cbam", "neck", {"inside": True})])
    assert attnyolo.remove(cfg, "cbam") == attnyolo.insert(y, "eca", where="backbone")[0]
    assert inside_rows(attnyolo.remove(cfg, [18])) == [21, 24]


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_remove_of_insert_inside_gives_the_base_back(data):
    base = data.draw(st.sampled_from(["yolov8n.yaml", "yolo11n.yaml", "yolov5nu.yaml", "yolov8n-seg.yaml"]))
    y = attnyolo.load(base)
    name = data.draw(st.sampled_from(NON_TEMPORAL))
    where = data.draw(
        st.one_of(
            st.sampled_from(["neck", "backbone"]),
            st.lists(st.sampled_from(_blocks(y)), min_size=1, max_size=4, unique=True),
        )
    )
    cfg, imap = attnyolo.insert(y, name, where=where, inside=True, check=False)
    assert len(layers(cfg)) == len(layers(y)) and imap.inserted == ()
    assert inside_rows(cfg) and all(option_of(layers(cfg)[i].args)["inside"] == name for i in inside_rows(cfg))
    assert attnyolo.remove(cfg) == y


# ------------------------------------------------------------------------------------------------ bad inputs


def test_a_layer_without_bottlenecks_is_refused_naming_it_and_the_blocks_that_work():
    with pytest.raises(PlacementError) as e:
        attnyolo.insert("yolov8n.yaml", "cbam", where=[9], inside=True)
    assert "layer 9 (SPPF)" in str(e.value) and all(b in str(e.value) for b in SUPPORTED)


def test_a_block_with_attention_repeats_is_refused_with_the_reason():
    with pytest.raises(PlacementError, match=r"layer 10 \(C2PSA\).*PSA attention blocks.*C3k2"):
        attnyolo.insert("yolo11n.yaml", "se", where=[10], inside=True)


def test_a_channel_constraint_broken_at_one_scale_names_the_layer_and_the_scale():
    # ShuffleAttention needs channels divisible by 2 * groups = 64: the neck's bottleneck widths (half of C2f's
    # output) are 32, 64, 128 at n, 64, 128, 256 at s and 128, 256, 256 at l
    with pytest.raises(ShapeError, match=r"layer 15 \(C2f inside, scale n\).*'sa' cannot take 32 channels"):
        attnyolo.insert("yolov8n.yaml", "sa", inside=True, groups=32)
    cfg, _ = attnyolo.insert("yolov8n.yaml", "sa", inside=True, groups=32, check=False)
    attnyolo.graph.checks.check_attention_rows(cfg, scales=["s", "l"])  # where the widths fit, it builds


def test_a_temporal_module_is_refused_inside_blocks():
    with pytest.raises(HyperparameterError, match="temporal"):
        attnyolo.insert("yolov8n.yaml", "tam", inside=True, frames=4)


def test_before_head_and_a_second_attention_in_the_same_block_are_refused():
    with pytest.raises(PlacementError, match="inside"):
        attnyolo.insert("yolov8n.yaml", "se", where="before_head", inside=True)
    cfg, _ = attnyolo.insert("yolov8n.yaml", "se", inside=True)
    with pytest.raises(PlacementError, match=r"already has 'se' inside; use attnyolo.replace"):
        attnyolo.insert(cfg, "eca", inside=True)


def test_a_hand_written_option_on_a_refused_block_fails_before_ultralytics_builds():
    cfg = attnyolo.load("yolov8n.yaml")
    cfg["backbone"][9] = [-1, 1, "SPPF", [{"inside": "se"}, 1024, 5]]
    with pytest.raises(GraphError, match=r"layer 9 \(SPPF\)"):
        attnyolo.build(cfg)


def test_ultralytics_own_build_path_refuses_a_temporal_module_and_a_block_without_bottlenecks():
    from ultralytics.nn.tasks import DetectionModel

    from attnyolo.graph.errors import BuildError

    attnyolo.register()
    cfg = attnyolo.load("yolov8n.yaml")
    cfg["head"][2] = [-1, 3, "C2f", [{"inside": "tam", "frames": 4}, 512]]
    with pytest.raises(HyperparameterError, match=r"layer 12 \(C2f\).*temporal"):
        DetectionModel(cfg, verbose=False)  # YOLO("file.yaml") takes this path, without attnyolo.build's checks
    cfg = attnyolo.load("yolov8n.yaml")
    cfg["backbone"][9] = [-1, 1, "SPPF", [{"inside": "se"}, 1024, 5]]
    with pytest.raises(BuildError, match=r"layer 9: SPPF has no residual bottleneck"):
        DetectionModel(cfg, verbose=False)
