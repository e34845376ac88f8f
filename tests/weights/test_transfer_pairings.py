"""Transfer between every pairing of base and edited models, from .pt and from .safetensors (issue 11, bug 1).

The expected placement of each tensor is computed from each model's own ``attnyolo`` record (base layer i sits at
``index_map[i]`` in both models), not from the alignment under test; the counts follow from the pairing: the
source's attention tensors move only when the target has the same attention at the same place.
"""

from __future__ import annotations

import pytest
import torch
from model_helpers import build
from typer.testing import CliRunner

import attnyolo
from attnyolo.checkpoints import load_checkpoint, save_safetensors
from attnyolo.cli import app
from attnyolo.weights import TransferError, transfer

BASE_TENSORS = 355  # yolov8n, 3 classes


@pytest.fixture(scope="module")
def cfgs():
    return {
        "base": attnyolo.load("yolov8n.yaml"),
        "cbam@neck": attnyolo.insert("yolov8n.yaml", "cbam", "neck")[0],
        "se@neck": attnyolo.insert("yolov8n.yaml", "se", "neck")[0],
        "cbam@backbone": attnyolo.insert("yolov8n.yaml", "cbam", "backbone")[0],
    }


def _base_layers(cfg: dict) -> list[int]:
    """Where base layer i sits in ``cfg``: its own record (the identity for the base)."""
    record = cfg.get("attnyolo")
    return list(record["index_map"]) if record else list(range(23))


def _attention_layers(cfg: dict) -> set[int]:
    record = cfg.get("attnyolo")
    return set(record["inserted"]) if record else set()


def _layer(key: str) -> int:
    return int(key.split(".")[1])


def _save(model, path, fmt):
    if fmt == "pt":
        torch.save({"model": model}, path)
    else:
        save_safetensors(model, path)
    return path


PAIRINGS = [  # (source, target, the source's attention rows have twins in the target)
    ("base", "base", True),
    ("base", "cbam@neck", True),
    ("cbam@neck", "cbam@neck", True),
    ("cbam@neck", "se@neck", False),
    ("cbam@neck", "cbam@backbone", False),
    ("cbam@neck", "base", False),
]


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
@pytest.mark.parametrize(("source_kind", "target_kind", "twins"), PAIRINGS)
def test_every_pairing_moves_each_tensor_to_its_layer(tmp_path, cfgs, fmt, source_kind, target_kind, twins):
    source_cfg, target_cfg = cfgs[source_kind], cfgs[target_kind]
    source = build(source_cfg, nc=3, seed=1)
    source_state = {k: v.clone() for k, v in source.state_dict().items()}
    path = _save(source, tmp_path / f"source.{fmt}", fmt)
    target = build(target_cfg, nc=3, seed=2)
    target_total = len(target.state_dict())

    report = transfer(target, path)

    attention_keys = {k for k in source_state if _layer(k) in _attention_layers(source_cfg)}
    expected_moved = len(source_state) - (0 if twins else len(attention_keys))
    assert len(source_state) == BASE_TENSORS + len(attention_keys)
    assert report.counts["transferred"] == expected_moved
    assert report.counts["skipped"] == len(source_state) - expected_moved
    assert report.counts["new"] == target_total - expected_moved
    assert {k for k, _ in report.skipped} == (set() if twins else attention_keys)
    assert all(reason.startswith("not in target (layer") for _, reason in report.skipped)

    source_at = {layer: i for i, layer in enumerate(_base_layers(source_cfg))}  # source layer -> base layer
    target_at = _base_layers(target_cfg)
    after = target.state_dict()
    for src, dst in report.transferred:
        layer = _layer(src)
        want = target_at[source_at[layer]] if layer in source_at else layer  # twins sit at the same index
        assert dst == f"model.{want}.{src.split('.', 2)[2]}"
        assert torch.equal(after[dst], source_state[src])


def test_an_edited_state_dict_without_its_architecture_keeps_its_keys(tmp_path, cfgs):
    """The issue's case: the dict of an edited .safetensors must not go through the base -> edited record."""
    source = build(cfgs["cbam@neck"], nc=3, seed=1)
    state = load_checkpoint(save_safetensors(source, tmp_path / "ft.safetensors"))
    target = build(cfgs["cbam@neck"], nc=3, seed=2)
    report = transfer(target, state)
    assert report.index_map_source == "none" and report.counts["transferred"] == len(state) == 388
    assert all(src == dst and torch.equal(target.state_dict()[dst], state[src]) for src, dst in report.transferred)


def test_an_unplaceable_bare_state_dict_is_refused_unless_partial_is_allowed(cfgs):
    state = build(cfgs["cbam@neck"], nc=3, seed=1).state_dict()
    target = build(cfgs["se@neck"], nc=3, seed=2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(TransferError, match=r"would be left behind .*--allow-partial"):
        transfer(target, state)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())
    report = transfer(target, state, allow_partial=True)
    assert report.counts["skipped"] > 0


def test_another_scale_is_refused_by_default_and_reported_with_allow_partial(cfgs):
    small = dict(cfgs["base"], scale="s")
    source, target = build(small, nc=3, seed=1), build(cfgs["base"], nc=3, seed=2)
    with pytest.raises(TransferError, match=r"^transfer from .* source tensors would be left behind .*shape mismatch"):
        transfer(target, source)
    report = transfer(target, source, allow_partial=True)
    mismatched = [k for k, v in source.state_dict().items() if v.shape != target.state_dict()[k].shape]
    assert sorted(k for k, _ in report.skipped) == sorted(mismatched) and mismatched


def test_a_class_count_change_between_edited_models_is_an_allowed_reported_skip(tmp_path, cfgs):
    source = build(cfgs["cbam@neck"], nc=3, seed=1)
    path = save_safetensors(source, tmp_path / "ft.safetensors")
    target = build(cfgs["cbam@neck"], nc=5, seed=2)
    report = transfer(target, path)
    assert sorted(k for k, _ in report.skipped) == sorted(
        f"model.25.cv3.{i}.2.{p}" for i in range(3) for p in ("weight", "bias")
    )
    assert report.counts["transferred"] == 388 - 6
    with pytest.raises(TransferError, match="strict transfer"):
        transfer(target, path, strict=True)


def test_cli_transfer_from_an_edited_safetensors_keeps_every_tensor(tmp_path, cfgs):
    source = build(cfgs["cbam@neck"], nc=3, seed=1)
    path = save_safetensors(source, tmp_path / "ft_cbam.safetensors")
    edited = tmp_path / "yolov8n-cbam.yaml"
    attnyolo.dump(cfgs["cbam@neck"], edited)
    result = CliRunner().invoke(app, ["transfer", str(edited), str(path), "-o", str(tmp_path / "out.pt")])
    assert result.exit_code == 0, result.output
    assert "transferred 388/388" in " ".join(result.output.split())
    out = load_checkpoint(tmp_path / "out.pt")["model"].state_dict()
    assert all(torch.equal(out[k], v) for k, v in source.state_dict().items())
