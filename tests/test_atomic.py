"""Files attnyolo writes are replaced atomically and get the mode the umask gives (issue 11, bug 2: they were 0600).

The reference is a file created by plain ``open()`` under the same umask, as Ultralytics writes its own files.
"""

from __future__ import annotations

import os
import stat
from types import SimpleNamespace

import pytest
import torch
from model_helpers import build, yolov8n_cfg

import attnyolo
from attnyolo.atomic import write_atomically
from attnyolo.checkpoints import save_safetensors
from attnyolo.cli import main
from attnyolo.finetune import GAMMA_CSV, GammaLogger


@pytest.fixture(params=[0o022, 0o027])
def umask(request, tmp_path):
    """Set the process umask for one test; yields the mode a plain ``open()`` gives a new file under it."""
    old = os.umask(request.param)
    try:
        reference = tmp_path / "reference.txt"
        with open(reference, "w"):
            pass
        yield stat.S_IMODE(reference.stat().st_mode)
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_umask_decides_the_reference_mode(umask):
    assert umask in (0o644, 0o640)


def test_safetensors_file_gets_the_umask_mode(tmp_path, umask):
    path = save_safetensors(build(yolov8n_cfg()), tmp_path / "m.safetensors")
    assert _mode(path) == umask


def test_pt_written_by_the_transfer_command_gets_the_umask_mode(tmp_path, umask, capsys):
    base = save_safetensors(build(yolov8n_cfg()), tmp_path / "base.safetensors")
    assert main(["transfer", "yolov8n.yaml", str(base), "-o", str(tmp_path / "out.pt")]) == 0, capsys.readouterr().err
    assert _mode(tmp_path / "out.pt") == umask


def test_gamma_csv_gets_the_umask_mode(tmp_path, umask):
    cfg, _ = attnyolo.insert("yolov8n.yaml", "se", "neck")
    trainer = SimpleNamespace(model=attnyolo.build(cfg, nc=3), ema=None, save_dir=tmp_path / "run", epoch=0)
    GammaLogger().on_train_start(trainer)
    assert _mode(tmp_path / "run" / GAMMA_CSV) == umask


def test_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(b"old")

    def fail(tmp):
        torch.save({"w": torch.zeros(2)}, tmp)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically(path, fail)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]


def test_write_replaces_the_whole_file(tmp_path):
    path = tmp_path / "sub" / "w.txt"
    write_atomically(path, lambda tmp: tmp.write_text("first, longer content"))
    write_atomically(path, lambda tmp: tmp.write_text("second"))
    assert path.read_text() == "second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["w.txt"]
