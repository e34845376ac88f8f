"""End to end: train an edited YAML for one epoch, reload it in a fresh process, validate, export to ONNX."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import attnyolo.graph as g

TRAIN = dict(epochs=1, imgsz=128, batch=8, fraction=0.1, workers=0, device="cpu", plots=False, amp=False, verbose=False)


@pytest.mark.slow  # trains one epoch
def test_edited_yolov8n_trains_saves_reloads_in_a_fresh_process_validates_and_exports(tmp_path, default_data):
    from ultralytics import YOLO

    cfg, _ = g.insert("yolov8n.yaml", "cbam")
    yaml_path = tmp_path / "yolov8n-cbam.yaml"
    g.dump(cfg, yaml_path)
    g.register()  # what `import attnyolo` does for users; YOLO() then resolves ay_cbam by name
    model = YOLO(str(yaml_path))
    model.train(data=str(default_data), project=str(tmp_path / "runs"), name="train", exist_ok=True, **TRAIN)
    last = tmp_path / "runs" / "train" / "weights" / "last.pt"
    assert last.is_file()

    # A fresh interpreter that knows nothing but `import attnyolo`: load, validate, export, compare with ONNX.
    script = textwrap.dedent(
        f"""
        import json, numpy as np, torch
        import attnyolo
        from ultralytics import YOLO
        model = YOLO({str(last)!r})
        record = model.model.yaml["attnyolo"]
        names = [type(m).__name__ for m in model.model.model]
        metrics = model.val(data={str(default_data)!r}, imgsz=128, batch=8, workers=0, device="cpu", plots=False,
                            project={str(tmp_path / "runs")!r}, name="val", exist_ok=True, verbose=False)
        onnx_path = model.export(format="onnx", imgsz=128, opset=17, simplify=False, dynamic=False)
        import onnxruntime as ort
        x = torch.rand(1, 3, 128, 128)
        net = model.model.float().eval()
        with torch.no_grad():
            ref = net(x)[0].numpy()
        got = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]).run(None, {{"images": x.numpy()}})[0]
        # the checkpoint's model.yaml rebuilds the same architecture, weights and all
        rebuilt = attnyolo.graph.build(model.model.yaml)
        rebuilt.load_state_dict(net.state_dict())
        with torch.no_grad():
            same = torch.allclose(rebuilt.eval()(x)[0], net(x)[0])
        print(json.dumps({{"record": record, "names": names, "map50": float(metrics.box.map50),
                          "onnx_err": float(np.abs(got - ref).max()), "rebuilt_same": bool(same)}}))
        """
    )
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["record"]["inserted"] == [16, 20, 24] and out["record"]["base"] == "yolov8n.yaml"
    assert [out["names"][i] for i in (16, 20, 24)] == ["ay_cbam"] * 3
    assert 0.0 <= out["map50"] <= 1.0
    assert out["onnx_err"] < 1e-3
    assert out["rebuilt_same"]
