"""Weight transfer through an index map: every base tensor reaches its layer, and the report says what happened."""

from __future__ import annotations

import pytest
import torch
from model_helpers import INSERT_AFTER_10, build, edited_cfg, yolov8n_cfg
from rich.console import Console
from safetensors.torch import save_file
from torch import nn
from ultralytics.utils.torch_utils import intersect_dicts

from attnyolo.checkpoints import load_checkpoint
from attnyolo.weights import TransferError, transfer

BN_ROW = [-1, 1, "nn.BatchNorm2d", []]  # parse_model gives it the incoming channels: a layer with parameters
IDENTITY_ROW = [-1, 1, "nn.Identity", []]


def _outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        y, extra = model.eval()(x)
    return [y, extra["boxes"], extra["scores"], *extra["feats"]]


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_insertion_keeps_every_base_tensor_where_key_matching_keeps_162_of_355():
    """The issue's measurement: YOLOv8n, 3 classes, one layer inserted after the first neck layer (10)."""
    base = build(yolov8n_cfg(), nc=3)
    edited = build(edited_cfg(BN_ROW), nc=3, seed=1)
    base_sd, edited_sd = base.state_dict(), edited.state_dict()
    key_matching = intersect_dicts(base_sd, edited_sd)  # what Ultralytics' model.load() would keep

    report = transfer(edited, base, INSERT_AFTER_10, strict=True)

    assert (len(key_matching), len(base_sd)) == (162, 355)
    assert report.key_matching_kept == len(key_matching)
    assert len(report.transferred) == report.source_total == len(base_sd)
    assert report.skipped == []
    assert sorted(report.newly_initialised) == sorted(
        k for k in edited_sd if k.startswith("model.11.")
    )  # the inserted BN
    after = edited.state_dict()
    for src, dst in report.transferred:
        _, layer, rest = src.split(".", 2)
        assert dst == f"model.{INSERT_AFTER_10[int(layer)]}.{rest}"
        assert torch.equal(after[dst], base_sd[src])


def test_parameter_free_insertion_after_transfer_reproduces_base_outputs():
    base = build(yolov8n_cfg())
    edited = build(edited_cfg(IDENTITY_ROW), seed=1)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(_outputs(base, x)[0], _outputs(edited, x)[0])
    report = transfer(edited, base, INSERT_AFTER_10)
    assert report.newly_initialised == [] and len(report.transferred) == 355
    assert all(torch.equal(a, b) for a, b in zip(_outputs(base, x), _outputs(edited, x), strict=True))


def test_transfer_from_a_trained_ultralytics_checkpoint_path(trained):
    best, _ = trained
    reference = load_checkpoint(best, trust=True)["model"].float().state_dict()
    edited = build(edited_cfg(BN_ROW))
    report = transfer(edited, best, INSERT_AFTER_10)
    assert report.source == str(best) and len(report.transferred) == len(reference)
    after = edited.state_dict()
    assert all(torch.equal(after[dst], reference[src]) for src, dst in report.transferred)


def test_mid_training_checkpoint_transfers_its_ema_weights(trained):
    _, mid = trained
    ckpt = load_checkpoint(mid)
    assert ckpt["model"] is None and ckpt["ema"] is not None
    target = build(yolov8n_cfg())
    report = transfer(target, mid)
    assert len(report.transferred) == 355
    assert torch.equal(target.state_dict()["model.0.conv.weight"], ckpt["ema"].state_dict()["model.0.conv.weight"])


@pytest.mark.parametrize("form", ["state-dict .pt", "safetensors", "state dict", "YOLO state dict"])
def test_every_source_form_gives_the_same_transfer(tmp_path, form):
    base = build(yolov8n_cfg())
    state = base.state_dict()
    if form == "state-dict .pt":
        source = tmp_path / "sd.pt"
        torch.save(state, source)
    elif form == "safetensors":
        source = tmp_path / "sd.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(source))
    elif form == "state dict":
        source = state
    else:  # keys of YOLO(...).state_dict() carry one more "model." prefix
        source = {f"model.{k}": v for k, v in state.items()}
    edited = build(edited_cfg(BN_ROW))
    report = transfer(edited, source, INSERT_AFTER_10, strict=True)
    assert len(report.transferred) == 355
    assert torch.equal(edited.state_dict()["model.23.cv2.0.0.conv.weight"], state["model.22.cv2.0.0.conv.weight"])


def test_yolo_objects_are_accepted_as_target_and_source():
    from ultralytics import YOLO

    target, source = YOLO("yolov8n.yaml"), YOLO("yolov8n.yaml")
    report = transfer(target, source, strict=True)
    assert len(report.transferred) == len(source.model.state_dict()) == 355
    assert torch.equal(target.model.model[22].cv3[0][2].weight, source.model.model[22].cv3[0][2].weight)


def test_other_class_count_skips_the_class_convs_with_their_shapes():
    base, target = build(yolov8n_cfg(), nc=3), build(yolov8n_cfg(), nc=5)
    report = transfer(target, base)
    expected = {
        f"model.22.cv3.{i}.2.{p}": f"shape mismatch (src {s3} vs dst {s5})"
        for i in range(3)
        for p, s3, s5 in (("weight", (3, 64, 1, 1), (5, 64, 1, 1)), ("bias", (3,), (5,)))
    }
    assert dict(report.skipped) == expected
    assert sorted(report.newly_initialised) == sorted(expected)  # those target tensors keep their own initialisation
    assert len(report.transferred) == 355 - 6


def test_strict_mode_raises_and_leaves_the_model_untouched():
    base, target = build(yolov8n_cfg(), nc=3), build(yolov8n_cfg(), nc=5, seed=1)
    before = _snapshot(target)
    with pytest.raises(
        TransferError, match=r"6 of 355 source tensors would be left behind .*model\.22\.cv3\.0\.2\.weight"
    ):
        transfer(target, base, strict=True)
    after = target.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_layer_absent_from_the_index_map_is_reported_not_in_target_and_tolerated_by_strict():
    base, target = build(yolov8n_cfg()), build(yolov8n_cfg(), seed=1)
    without_head = {i: i for i in range(22)}
    report = transfer(target, base, without_head, strict=True)
    head = [k for k in base.state_dict() if k.startswith("model.22.")]
    assert dict(report.skipped) == {k: "not in target (layer 22 is not in the index map)" for k in head}
    assert len(report.transferred) == 355 - len(head)


def test_index_map_that_merges_two_layers_is_rejected():
    base, target = build(yolov8n_cfg()), build(yolov8n_cfg())
    with pytest.raises(TransferError, match=r"same new layer\(s\) \[3\]"):
        transfer(target, base, {**{i: i for i in range(23)}, 2: 3})


def test_source_without_weights_is_rejected():
    with pytest.raises(TransferError, match="holds neither a model nor a state dict"):
        transfer(build(yolov8n_cfg()), {"date": "2024", "epoch": 3})


def test_report_table_has_one_row_per_layer_with_counts_and_reasons():
    base, target = build(yolov8n_cfg(), nc=3), build(edited_cfg(BN_ROW), nc=5)
    report = transfer(target, base, INSERT_AFTER_10)
    console = Console(width=200, record=True)
    console.print(report.as_table())
    text = console.export_text()
    rows = {cells[0]: cells[1:] for line in text.splitlines() if (cells := [c.strip() for c in line.split("│")[1:-1]])}
    mismatch = "; ".join(
        f"shape mismatch (src {s} vs dst {d})" for s, d in (("(3, 64, 1, 1)", "(5, 64, 1, 1)"), ("(3,)", "(5,)"))
    )
    assert rows["22"] == ["23", "79", "6", "6", mismatch]  # head: moved to 23, class convs left behind
    assert rows["12"] == ["13", "24", "", "", ""]
    assert rows["-"] == ["11", "", "", "5", ""]  # the inserted BatchNorm received nothing
    assert "Ultralytics' key matching would keep 162" in " ".join(text.split())


def test_report_table_per_tensor_has_one_row_per_tensor():
    base, target = build(yolov8n_cfg()), build(edited_cfg(BN_ROW))
    report = transfer(target, base, INSERT_AFTER_10)
    table = report.as_table(per_tensor=True)
    assert table.row_count == len(report.transferred) + len(report.skipped) + len(report.newly_initialised) == 360


@pytest.mark.parametrize("form", ["dict", ".pt"])
def test_checkpoint_with_model_and_ema_gives_the_ema_weights_and_architecture(tmp_path, form):
    """Ultralytics prefers ``ema``: its weights, and its architecture for aligning the layers, not ``model``'s."""
    ema = build(yolov8n_cfg(), seed=1)  # the base architecture: aligned with the target, layers after 10 move
    model = build(edited_cfg(IDENTITY_ROW), seed=2)  # another architecture (keys already shifted) and weights
    source = {"model": model, "ema": ema}  # "model" first: the order of the keys must not decide
    if form == ".pt":
        torch.save(source, tmp_path / "both.pt")
        source = tmp_path / "both.pt"
    target = build(edited_cfg([-1, 1, "ay_se", []]), seed=3)  # the base with an attention row: alignable

    report = transfer(target, source)

    assert report.index_map_source == "aligned" and report.index_map == INSERT_AFTER_10
    assert len(report.transferred) == report.source_total == len(ema.state_dict())
    ema_sd, model_sd, after = ema.state_dict(), model.state_dict(), target.state_dict()
    for src, dst in report.transferred:
        assert torch.equal(after[dst], ema_sd[src])
    floats = [k for k in model_sd if model_sd[k].is_floating_point()]
    assert floats and all(not torch.equal(after[k], model_sd[k]) for k in floats)  # nothing came from "model"
