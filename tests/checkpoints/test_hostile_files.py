"""Files that would run code are refused by every loader, with and without ``python -O``.

Under ``-O`` Python drops ``assert`` statements; a check written as an assert would vanish there. Each mode runs
in one child process that loads every hostile file through every loader (the API and the CLI) and reports, per
pair, the error and whether the payload ran (the file it would create exists).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from model_helpers import hostile_activation, yolov8n_cfg
from ultralytics.nn.tasks import DetectionModel

TESTS = Path(__file__).parents[1]  # where model_helpers.py is
LOADERS = ("load_safetensors_model", "load_checkpoint", "transfer", "finetune", "cli transfer", "cli finetune")
FILES = ("activation.safetensors", "activation.pt", "nested-model.safetensors", "system.pt", "constructor.pt")
pytestmark = pytest.mark.slow  # two child processes (~30 s); the same checks run in-process in test_names.py

CASES = [(f, loader) for f in FILES for loader in LOADERS if f.endswith(".safetensors") or "safetensors" not in loader]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """``{mode: child report}`` for ``-O`` and the default mode, each from one child process."""
    out = {}
    for mode, flags in (("optimised", ["-O"]), ("default", [])):
        root = tmp_path_factory.mktemp(f"hostile-{mode}")
        code = (
            "import json, sys; import attnyolo; sys.path.insert(0, sys.argv[1]); import model_helpers; "
            "print('REPORT ' + json.dumps(model_helpers.load_hostile_files(__import__('pathlib').Path(sys.argv[2]))))"
        )
        proc = subprocess.run(
            [sys.executable, *flags, "-c", code, str(TESTS), str(root)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        lines = [x for x in proc.stdout.splitlines() if x.startswith("REPORT ")]
        assert proc.returncode == 0 and lines, proc.stderr[-3000:]
        out[mode] = json.loads(lines[-1][len("REPORT ") :])
    return out


def test_the_child_ran_with_asserts_removed(loaded):
    assert loaded["optimised"]["debug"] is False
    assert loaded["default"]["debug"] is True


@pytest.mark.parametrize("mode", ["optimised", "default"])
@pytest.mark.parametrize(("name", "loader"), CASES)
def test_hostile_file_is_refused_naming_the_file_and_the_value(loaded, mode, name, loader):
    report = loaded[mode]
    row = report["results"][name][loader]
    path, marker, refused = report["files"][name]
    assert row["payload_ran"] is False
    assert not Path(marker).exists()
    if loader.startswith("cli"):
        assert row["rc"] == 2 and row["message"].startswith("attnyolo: error: ")
        assert len(row["message"].strip().splitlines()) == 1
    else:
        assert row["error"] == "CheckpointError"
    assert path in row["message"] and refused in row["message"]


def test_the_payloads_are_live(tmp_path):
    """Without attnyolo's checks, Ultralytics runs the activation payload: the tests above test a real attack."""
    marker = tmp_path / "ran"
    # `or torch.nn.SiLU()` lets the build finish, so parse_model restores its process-wide Conv.default_act
    DetectionModel({**yolov8n_cfg(), "activation": f"{hostile_activation(marker)} or torch.nn.SiLU()"}, verbose=False)
    assert marker.exists()
