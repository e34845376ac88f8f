"""With every network call refused, attnyolo + Ultralytics train, validate, predict and export,
and nothing even tries to connect (no DNS probe, no font download, no settings sync, no pip)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).with_name("offline_probe.py")


@pytest.mark.slow
def test_train_val_predict_export_with_network_blocked(tmp_path):
    # No YOLO_* variables: the offline defaults must come from `import attnyolo` itself.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "ATTNYOLO_"))}
    env["ATTNYOLO_HOME"] = str(tmp_path / "home")  # fresh config: fonts and settings created under the guard
    out = subprocess.run(
        [sys.executable, str(PROBE), str(tmp_path / "runs")], capture_output=True, text=True, env=env, timeout=900
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["attempts"] == []
    assert result["predictions"] == 1
    assert Path(result["onnx"]).stat().st_size > 1_000_000  # a real nano model graph, not an empty file
    assert (tmp_path / "runs" / "train" / "results.csv").exists()
    assert list((tmp_path / "runs" / "val").glob("*.png")), "validation plots (they need the local font)"
    # The fonts Ultralytics plotted with are attnyolo's local copies, not downloads.
    assert (tmp_path / "home" / "config" / "Ultralytics" / "Arial.ttf").exists()


def test_the_guard_sees_the_dns_probe_when_offline_mode_is_switched_off(tmp_path):
    # Proves the harness above can fail: with the user's YOLO_OFFLINE=0, Ultralytics probes DNS at import.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "ATTNYOLO_"))}
    env.update(ATTNYOLO_HOME=str(tmp_path / "home"), YOLO_OFFLINE="0")
    out = subprocess.run(
        [sys.executable, str(PROBE), "--import-only"], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr
    attempts = json.loads(out.stdout.strip().splitlines()[-1])["attempts"]
    assert any("getaddrinfo" in a for a in attempts)
