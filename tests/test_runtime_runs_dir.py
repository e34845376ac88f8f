"""Ultralytics' runs folder follows the current directory after ``import attnyolo``, as in plain Ultralytics: a
``YOLO(...).val()`` from folder A writes A/runs, from folder B writes B/runs, even when attnyolo's shared settings
file had pinned ``runs_dir`` to the first clone's ``runs/`` (what earlier versions left behind); a runs_dir the
user sets afterwards is kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

VAL = """
import json, sys
import attnyolo
from ultralytics import YOLO
from ultralytics.utils import SETTINGS
metrics = YOLO(sys.argv[1]).val(data=sys.argv[2], imgsz=64, batch=8, device="cpu", plots=False, verbose=False)
print(json.dumps({"save_dir": str(metrics.save_dir), "runs_dir": SETTINGS["runs_dir"]}))
"""


def _env(home: Path) -> dict:
    # No pytest variable: Ultralytics sends runs to its own tests/tmp folder when it believes pytest runs it.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "ATTNYOLO_", "PYTEST_"))}
    return env | {"ATTNYOLO_HOME": str(home)}


def _val(cwd: Path, home: Path, data: Path) -> dict:
    cwd.mkdir(parents=True, exist_ok=True)
    out = subprocess.run([sys.executable, "-c", VAL, "yolov8n.yaml", str(data)],
                         cwd=cwd, env=_env(home), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _pin_runs_dir(home: Path, clone: Path) -> Path:
    """attnyolo's settings file as an earlier version left it: runs_dir pinned to the first clone's runs/."""
    settings = home / "config" / "Ultralytics" / "settings.json"
    probe = subprocess.run([sys.executable, "-c", "import attnyolo"], env=_env(home), capture_output=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    (settings.parent / "attnyolo-runs-dir-set").unlink()  # as if written before attnyolo set runs_dir
    content = json.loads(settings.read_text()) | {"runs_dir": str(clone / "runs")}
    settings.write_text(json.dumps(content))
    return settings


@pytest.mark.slow
def test_val_from_two_folders_writes_each_folders_runs(tmp_path, default_data):
    home, clone = tmp_path / "home", tmp_path / "clone1"
    settings = _pin_runs_dir(home, clone)
    a = _val(tmp_path / "a", home, default_data)
    b = _val(tmp_path / "b" / "deeper", home, default_data)
    print(f"from a: {a}; from b: {b}")
    assert Path(a["save_dir"]) == tmp_path / "a" / "runs" / "detect" / "val"
    assert Path(b["save_dir"]) == tmp_path / "b" / "deeper" / "runs" / "detect" / "val"
    assert Path(a["save_dir"]).is_dir() and Path(b["save_dir"]).is_dir()
    assert not (clone / "runs").exists()
    assert a["runs_dir"] == b["runs_dir"] == "runs" == json.loads(settings.read_text())["runs_dir"]


def test_a_runs_dir_the_user_sets_afterwards_is_kept(tmp_path):
    home = tmp_path / "home"
    own = str(tmp_path / "my-runs")
    code = f"import attnyolo; from ultralytics.utils import SETTINGS; SETTINGS.update(runs_dir={own!r})"
    for argv in (["-c", code], ["-c", "import attnyolo"]):  # set it, then a fresh import
        out = subprocess.run([sys.executable, *argv], env=_env(home), capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
    settings = home / "config" / "Ultralytics" / "settings.json"
    assert json.loads(settings.read_text())["runs_dir"] == own


def test_a_users_own_config_dir_is_not_touched(tmp_path):
    own = tmp_path / "own-config"
    env = _env(tmp_path / "home") | {"YOLO_CONFIG_DIR": str(own)}
    code = (
        "import attnyolo; from ultralytics.utils import SETTINGS as S; print(S['runs_dir'] == S.defaults['runs_dir'])"  # noqa: E501
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "True"  # Ultralytics' own default, whatever it is here
    assert not (own / "Ultralytics" / "attnyolo-runs-dir-set").exists()
