"""`attnyolo yolo ...` hands its arguments to Ultralytics once, and a typo is one line with exit 2 (issue 11)."""

from __future__ import annotations

import pytest
from cli_helpers import assert_one_line_error, run_cli

from attnyolo.yolo_args import YoloArgumentError, check_cli_args


def test_help_quotes_the_arguments_once():
    out = run_cli("yolo", "help")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "Arguments received: ['yolo', 'help']" in text
    assert "'yolo', 'yolo'" not in text


def test_a_bad_key_is_one_line_naming_the_closest_keys_and_exits_2():
    out = run_cli("yolo", "train", "model=yolov8n.yaml", "epoch=1")
    assert_one_line_error(out, "'epoch' is not an Ultralytics argument; did you mean epochs")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "epoch=1"], "'epoch' is not an Ultralytics argument; did you mean epochs"),
        (["train", "epochs=abc"], "bad yolo argument: 'epochs=abc'"),
        (["trian", "epochs=1"], "'trian' is not an Ultralytics argument, task or mode; did you mean train"),
        (["train", "imgsz"], "'imgsz' needs a value: imgsz=640"),
    ],
)
def test_bad_arguments_are_refused_before_ultralytics(args, message):
    with pytest.raises(YoloArgumentError, match=message.replace("(", r"\(").replace("[", r"\[")):
        check_cli_args(args)


@pytest.mark.parametrize(
    "args",
    [
        ["detect", "train", "model=yolov8n.yaml", "data=x.yaml", "epochs=3", "imgsz=320", "device=cpu"],
        ["val", "model=best.pt", "plots", "--batch=4"],
        ["settings", "anything=goes"],  # Ultralytics runs the special command with the rest
        ["train", "boxes=False", "cfg=args.yaml"],  # a deprecated key Ultralytics maps, and a cfg file
    ],
)
def test_valid_arguments_pass(args):
    check_cli_args(args)
