"""End to end with attention inside blocks: train one epoch, reload in fresh processes (plain, and with
``ULTRALYTICS_SAFE_LOAD=1``), validate, export to ONNX and compare onnxruntime with torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import attnyolo

TRAIN = dict(epochs=1, imgsz=64, batch=4, fraction=0.05, workers=0, device="cpu", plots=False, amp=False, verbose=False)


def _fresh(code: str, cwd, **env) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "YOLO_OFFLINE": "1", **env},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_inside_yolov8n_trains_reloads_validates_and_exports(tmp_path, default_data):
    from ultralytics import YOLO

    cfg, _ = attnyolo.insert("yolov8n.yaml", [("eca", "backbone"), ("cbam", "neck", {"inside": True})])
    path = tmp_path / "yolov8n-eca-cbam-inside.yaml"
    attnyolo.dump(cfg, path)
    YOLO(str(path)).train(data=str(default_data), project=str(tmp_path / "runs"), name="t", exist_ok=True, **TRAIN)
    last = tmp_path / "runs" / "t" / "weights" / "last.pt"

    out = _fresh(
        f"""
        import json, numpy as np, torch
        import attnyolo
        from ultralytics import YOLO
        from attnyolo.finetune import gamma_values
        model = YOLO({str(last)!r})
        net = model.model.float().eval()
        kinds = sorted({{type(m).__name__ for m in net.model[18].modules() if hasattr(m, "attn")}})
        gammas = [g[0] for g in gamma_values(net)]
        metrics = model.val(data={str(default_data)!r}, imgsz=64, batch=4, workers=0, device="cpu", plots=False,
                            project={str(tmp_path / "runs")!r}, name="v", exist_ok=True, verbose=False)
        onnx_path = model.export(format="onnx", imgsz=64, opset=17, simplify=False, dynamic=False)
        import onnxruntime as ort
        x = torch.rand(1, 3, 64, 64)
        net = model.model.float().eval()
        with torch.no_grad():
            ref = net(x)[0].numpy()
        got = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]).run(None, {{"images": x.numpy()}})[0]
        rebuilt = attnyolo.build(net.yaml)
        rebuilt.load_state_dict(net.state_dict())
        with torch.no_grad():
            same = torch.allclose(rebuilt.eval()(x)[0], net(x)[0])
        print(json.dumps({{"kinds": kinds, "gammas": gammas, "map50": float(metrics.box.map50),
                          "onnx_err": float(np.abs(got - ref).max()), "rebuilt_same": bool(same)}}))
        """,
        tmp_path,
    )
    assert "InsideBottleneck" in out["kinds"]
    assert {"18.m.0.attn", "21.m.0.attn", "24.m.0.attn"} <= set(out["gammas"])
    assert 0.0 <= out["map50"] <= 1.0
    assert out["onnx_err"] < 1e-3 and out["rebuilt_same"]

    safe = _fresh(
        f"""
        import json
        import attnyolo
        from ultralytics.nn.tasks import torch_safe_load
        from attnyolo.checkpoints import load_checkpoint
        ckpt, _ = torch_safe_load({str(last)!r})
        own = load_checkpoint({str(last)!r})
        names = [type(m).__name__ for m in ckpt["model"].model[21].m]
        print(json.dumps({{"names": names, "own": type(own["model"]).__name__}}))
        """,
        tmp_path,
        ULTRALYTICS_SAFE_LOAD="1",
    )
    assert safe["names"] == ["InsideBottleneck"] * len(safe["names"]) and safe["names"]
    assert safe["own"] == "DetectionModel"
