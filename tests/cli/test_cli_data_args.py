"""A data YAML is taken as --data PATH or as Ultralytics' data=PATH wherever a command needs one (issue 11)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import attnyolo
from attnyolo.cli import main
from attnyolo.cli.args import CLIArgumentError, data_path, take_data


def test_take_data_reads_either_spelling_and_keeps_the_other_arguments():
    assert take_data(Path("a.yaml"), ["epochs=1"]) == (Path("a.yaml"), ["epochs=1"])
    assert take_data(None, ["epochs=1", "data=b.yaml", "imgsz=64"]) == (Path("b.yaml"), ["epochs=1", "imgsz=64"])
    assert take_data(Path("b.yaml"), ["data=b.yaml"]) == (Path("b.yaml"), [])
    assert take_data(None, [], required=False) == (None, [])
    assert data_path("data=c.yaml") == data_path("c.yaml") == Path("c.yaml")


@pytest.mark.parametrize(
    ("option", "extra", "message"),
    [
        (Path("a.yaml"), ["data=b.yaml"], "the data YAML is given twice (a.yaml, b.yaml)"),
        (None, ["data=a.yaml", "data=b.yaml"], "the data YAML is given twice"),
        (None, ["epochs=1"], "a data YAML is needed: data=PATH or --data PATH"),
        (None, ["data="], "data= needs a path"),
    ],
)
def test_take_data_refuses_an_ambiguous_or_missing_data_yaml(option, extra, message):
    with pytest.raises(CLIArgumentError, match=message.replace("(", r"\(").replace(")", r"\)")):
        take_data(option, extra)


def test_finetune_takes_data_in_ultralytics_style(capsys, tmp_path):
    base = tmp_path / "base.pt"
    torch.save({"model": attnyolo.build("yolov8n.yaml", nc=3)}, base)
    missing = tmp_path / "nope.yaml"
    assert main(["finetune", str(base), "cbam", f"data={missing}", "epochs=1"]) == 2
    err = capsys.readouterr().err
    assert err == f"attnyolo: error: data YAML {str(missing)!r} does not exist\n"  # read as the data, not refused
    assert main(["finetune", str(base), "cbam", "epochs=1"]) == 2
    assert "a data YAML is needed: data=PATH or --data PATH" in capsys.readouterr().err
