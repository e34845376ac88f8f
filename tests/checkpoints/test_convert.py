"""`attnyolo convert`: .pt <-> .safetensors through the safe loaders, back to a .pt that Ultralytics loads."""

from __future__ import annotations

import pytest
import torch
from model_helpers import build, payloads, save_ultralytics
from ultralytics import YOLO

import attnyolo
from attnyolo.checkpoints import load_safetensors_model, safetensors_metadata
from attnyolo.cli import main


def _outputs(model, x):
    with torch.no_grad():
        y, _ = model.eval()(x)
    return y


def test_pt_to_safetensors_and_back_keeps_every_tensor_and_loads_in_ultralytics(tmp_path, capsys):
    cfg, _ = attnyolo.insert("yolov8n.yaml", "cbam", "neck")
    model = build(cfg, nc=3, seed=3)
    model.names = {0: "RBC", 1: "WBC", 2: "Platelets"}
    pt = save_ultralytics(model, tmp_path / "ft.pt")

    assert main(["convert", str(pt), str(tmp_path / "ft.safetensors")]) == 0
    assert f"wrote {tmp_path / 'ft.safetensors'} (388 tensors)" in " ".join(capsys.readouterr().out.split())
    rebuilt = load_safetensors_model(tmp_path / "ft.safetensors")
    assert rebuilt.names == model.names
    assert all(torch.equal(rebuilt.state_dict()[k], v) for k, v in model.state_dict().items())

    assert main(["convert", str(tmp_path / "ft.safetensors"), str(tmp_path / "back.pt")]) == 0
    back = YOLO(str(tmp_path / "back.pt"))  # Ultralytics' own loader
    assert back.names == model.names and len(back.model.state_dict()) == 388
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(_outputs(back.model, x), _outputs(model, x))


def test_a_pickle_that_would_run_code_is_refused_without_trust(tmp_path, capsys):
    marker = tmp_path / "pwned"
    payload, name = payloads(marker)["os.system"]
    torch.save({"model": payload}, tmp_path / "evil.pt")
    assert main(["convert", str(tmp_path / "evil.pt"), str(tmp_path / "evil.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("attnyolo: error: ") and name in err and err.count("\n") == 1
    assert not marker.exists() and not (tmp_path / "evil.safetensors").exists()


@pytest.mark.parametrize(
    ("source", "output", "message"),
    [
        ("sd.pt", "out.safetensors", "holds no model with its architecture"),
        ("sd.pt", "out.pt", "convert goes from .pt to .safetensors or back"),
        ("sd.pt", "exists.safetensors", "exists.safetensors exists; pass --force"),
    ],
)
def test_bad_conversions_are_one_line(tmp_path, capsys, source, output, message):
    torch.save(attnyolo.build("yolov8n.yaml", nc=3).state_dict(), tmp_path / "sd.pt")
    (tmp_path / "exists.safetensors").write_text("keep me", encoding="utf-8")
    assert main(["convert", str(tmp_path / source), str(tmp_path / output)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("attnyolo: error: ") and message in err
    assert (tmp_path / "exists.safetensors").read_text(encoding="utf-8") == "keep me"


def test_the_safetensors_records_the_architecture_of_the_checkpoints_ema(tmp_path):
    ema, raw = build(attnyolo.load("yolov8n.yaml"), nc=3, seed=1), build(attnyolo.load("yolov8n.yaml"), nc=3, seed=2)
    torch.save({"model": raw, "ema": ema}, tmp_path / "last.pt")
    assert main(["convert", str(tmp_path / "last.pt"), str(tmp_path / "last.safetensors")]) == 0
    rebuilt = load_safetensors_model(tmp_path / "last.safetensors")
    assert all(torch.equal(rebuilt.state_dict()[k], v) for k, v in ema.state_dict().items())
    assert "model_yaml" in safetensors_metadata(tmp_path / "last.safetensors")
