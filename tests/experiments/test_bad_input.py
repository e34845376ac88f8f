"""Bad input to `attnyolo ablate`: one line on stderr, exit code 2, nothing stored touched."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
import yaml

from attnyolo.cli import main
from attnyolo.experiments.runner import git_rev, machine, versions
from attnyolo.experiments.store import ResultsStore


def _run(capsys, *argv: str) -> str:
    rc = main(["ablate", *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("attnyolo: error: ")
    return err


def _base(data: Path, out: Path) -> list[str]:
    return ["--data", str(data), "-m", "yolov8n.yaml", "-o", str(out), "epochs=1", "imgsz=64"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["-a", "cbma"], "unknown attention 'cbma'; did you mean cbam"),
        ([], "the grid is empty"),
        (["-a", "se", "--seeds", "0"], "seeds must be a count >= 1"),
        (["-a", "se", "--seeds", "-2"], "seeds must be a count >= 1"),
        (["-a", "se", "epoch=3"], "'epoch' is not an Ultralytics training argument; did you mean epochs?"),
        (["-a", "se", "seed=3"], "seed= cannot be set in a grid"),
        (["-a", "se", "-w", "nowhere"], "nowhere"),
    ],
)
def test_bad_grid_is_one_line_and_writes_nothing(capsys, tmp_path, default_data, extra, expected):
    out = tmp_path / "grid"
    err = _run(capsys, *_base(default_data, out), *extra)
    assert expected in err
    assert not out.exists()


def test_missing_data_yaml(capsys, tmp_path):
    out = tmp_path / "grid"
    err = _run(capsys, "--data", str(tmp_path / "nope.yaml"), "-m", "yolov8n.yaml", "-a", "se", "-o", str(out))
    assert "nope.yaml" in err and "does not exist" in err and not out.exists()


def test_ray_executor_without_ray_says_how_to_install(capsys, tmp_path, default_data, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    out = tmp_path / "grid"
    err = _run(capsys, *_base(default_data, out), "-a", "se", "--executor", "ray")
    assert "pip install 'attnyolo[ray]'" in err and not out.exists()


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def test_folder_with_another_grid_is_refused_saying_what_differs(capsys, tmp_path, default_data):
    from attnyolo.experiments.grid import resolve

    out = tmp_path / "grid"
    stored = resolve({"data": str(default_data), "model": "yolov8n.yaml", "attention": ["se"],
                      "recipe": {"epochs": 1, "imgsz": 64}})  # fmt: skip
    ResultsStore.create(out, stored.config(), machine(), versions(), git_rev()).close()
    (out / "grid.yaml").write_text(yaml.safe_dump(stored.config()))
    before = _digest(out)
    err = _run(capsys, "--data", str(default_data), "-m", "yolov8n.yaml", "-a", "cbam", "-o", str(out),
               "epochs=2", "imgsz=64")  # fmt: skip
    assert "holds another grid" in err and "recipe.epochs: stored 1, given 2" in err
    assert "variants: stored ['baseline', 'se@neck'], given ['baseline', 'cbam@neck']" in err
    assert _digest(out) == before


def test_unknown_grid_yaml_key_suggests_the_right_one(capsys, tmp_path, default_data):
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({"data": str(default_data), "model": "yolov8n.yaml", "attentions": ["se"]}))
    err = _run(capsys, str(grid), "-o", str(tmp_path / "grid"))
    assert "attentions (did you mean attention?)" in err
