"""``attnyolo yolov5 ...``: the original YOLOv5 (v7.0) host: its YAMLs, a start checkpoint, train, val, export.

Examples:
    attnyolo yolov5 yaml yolov5s -o yolov5s.yaml
    attnyolo insert yolov5s.yaml cbam --where neck -o yolov5s-cbam.yaml
    attnyolo yolov5 init yolov5s.yaml -o yolov5s.pt
    attnyolo transfer yolov5s-cbam.yaml yolov5s.pt -o start.pt
    attnyolo yolov5 train --cfg yolov5s-cbam.yaml --weights start.pt --data DATA.yaml epochs=1 imgsz=128
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import torch
import typer

from attnyolo.console import make_console

yolov5_app = typer.Typer(
    help="The original YOLOv5 (v7.0: the yolov5 package or a clone given by --yolov5 / ATTNYOLO_YOLOV5).",
    no_args_is_help=True,
)

YOLOV5_OPTION = typer.Option(
    None, "--yolov5", help="A YOLOv5 v7.0 clone folder (default: $ATTNYOLO_YOLOV5, else the yolov5 package)."
)
TRUST_OPTION = typer.Option(False, "--trust-checkpoint", help="Full pickle loads (only checkpoints you trust).")


@yolov5_app.command("yaml")
def yaml_command(
    name: str = typer.Argument(..., help="yolov5n, yolov5s, yolov5m, yolov5l or yolov5x (or any models/*.yaml)."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to copy it."),
    yolov5: Path | None = YOLOV5_OPTION,
) -> None:
    """Copy one of YOLOv5's own original-format model YAMLs (models/NAME.yaml) out of the YOLOv5 in use."""
    from attnyolo.hosts.yolov5 import YOLOv5HostError, locate

    code = locate(yolov5)
    source = code.root / "models" / f"{Path(name).stem}.yaml"
    if not source.is_file():
        found = sorted(p.stem for p in (code.root / "models").glob("*.yaml"))
        raise YOLOv5HostError(f"{source}: no such YOLOv5 model YAML; found: {', '.join(found)}")
    shutil.copyfile(source, output)
    typer.echo(f"wrote {output} (from {source})")


@yolov5_app.command("init")
def init_command(
    cfg: Path = typer.Argument(..., help="An original-format YOLOv5 YAML."),
    output: Path = typer.Option(..., "--output", "-o", help="The checkpoint to write (.pt)."),
    seed: int = typer.Option(0, "--seed", help="torch seed of the initial weights."),
    nc: int | None = typer.Option(None, "--nc", help="Classes (default: the YAML's nc)."),
    yolov5: Path | None = YOLOV5_OPTION,
) -> None:
    """Write a randomly initialised model in YOLOv5's own checkpoint format, as its train.py saves one.

    For trying the workflow offline (no released weights are downloaded); use your own trained .pt otherwise.
    """
    from attnyolo.hosts.yolov5 import build, save_yolov5_checkpoint

    torch.manual_seed(seed)
    model = build(cfg, nc=nc, yolov5=yolov5)
    save_yolov5_checkpoint(copy.deepcopy(model).half(), output, {"init": str(cfg), "seed": seed})
    typer.echo(f"wrote {output}")


@yolov5_app.command(
    "train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, no_args_is_help=True
)
def train_command(
    ctx: typer.Context,
    data: Path = typer.Option(..., "--data", help="A data YAML (`attnyolo data default` prints the embedded one)."),
    cfg: Path | None = typer.Option(None, "--cfg", help="The model YAML (an edited original-format YAML)."),
    weights: Path | None = typer.Option(None, "--weights", help="A start checkpoint (from `attnyolo transfer`)."),
    yolov5: Path | None = YOLOV5_OPTION,
    trust: bool = TRUST_OPTION,
) -> None:
    """YOLOv5's own train.py with the zoo registered; more train.py options as key=value (epochs=1 imgsz=128)."""
    from attnyolo.hosts.yolov5.entry import options_from, train

    save_dir = train(
        data=data, cfg=cfg or "", weights=weights or "", yolov5=yolov5, trust=trust, **options_from(ctx.args)
    )
    make_console().print(f"run folder: {save_dir}")


@yolov5_app.command(
    "val", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, no_args_is_help=True
)
def val_command(
    ctx: typer.Context,
    weights: Path = typer.Option(..., "--weights", help="A YOLOv5 checkpoint."),
    data: Path = typer.Option(..., "--data", help="A data YAML."),
    yolov5: Path | None = YOLOV5_OPTION,
    trust: bool = TRUST_OPTION,
) -> None:
    """YOLOv5's own val.py; more val.py options as key=value (imgsz=128 batch_size=4)."""
    from attnyolo.hosts.yolov5.entry import options_from, val

    results = val(data=data, weights=weights, yolov5=yolov5, trust=trust, **options_from(ctx.args))
    mp, mr, map50, map_ = results[0][:4]
    make_console().print(f"P {mp:.4f}  R {mr:.4f}  mAP50 {map50:.4f}  mAP50-95 {map_:.4f}")


@yolov5_app.command(
    "export", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, no_args_is_help=True
)
def export_command(
    ctx: typer.Context,
    weights: Path = typer.Option(..., "--weights", help="A YOLOv5 checkpoint."),
    include: str = typer.Option("onnx", "--include", help="Formats, comma-separated (YOLOv5's names)."),
    yolov5: Path | None = YOLOV5_OPTION,
    trust: bool = TRUST_OPTION,
) -> None:
    """YOLOv5's own export.py (ONNX opset 17 by default); more export.py options as key=value (imgsz=128)."""
    from attnyolo.hosts.yolov5.entry import export, options_from

    files = export(
        weights=weights, include=tuple(include.split(",")), yolov5=yolov5, trust=trust, **options_from(ctx.args)
    )
    for f in files:
        if f:
            typer.echo(f"wrote {f}")


def register_commands(app: typer.Typer) -> None:
    """Add the ``yolov5`` command group to ``app``."""
    app.add_typer(yolov5_app, name="yolov5")
