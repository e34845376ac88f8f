"""CLI commands of the weight layer: ``attnyolo finetune``, ``attnyolo transfer`` and ``attnyolo convert``.

``register_commands(app)`` adds both to a Typer app (the main ``attnyolo`` CLI wires them in)::

    attnyolo finetune runs/detect/train/weights/best.pt cbam --where neck --data data.yaml epochs=30 imgsz=320
    attnyolo transfer yolov8n-cbam.yaml runs/detect/train/weights/best.pt -o yolov8n-cbam-start.pt

Errors (a checkpoint that is missing, damaged, unsafe or of another architecture; a bad placement or argument)
reach :func:`attnyolo.cli.main` as attnyolo errors and are printed as one line.
"""

from __future__ import annotations

from pathlib import Path

import typer

from attnyolo.checkpoints.convert import ConvertError
from attnyolo.cli.args import DATA_HELP, parse_hparams, parse_where, parse_yolo_args, take_data
from attnyolo.console import make_console


def finetune_command(
    ctx: typer.Context,
    base: Path = typer.Argument(..., help="Base checkpoint: an Ultralytics .pt (best.pt) or an attnyolo .safetensors."),
    name: str = typer.Argument(..., help="Attention name(s) from `attnyolo list`; several as cbam,se (chained)."),
    where: str = typer.Option("neck", "--where", "-w", help="neck (default), backbone, before_head or IDX,..."),
    data: Path | None = typer.Option(None, "--data", "-d", help=DATA_HELP),
    freeze_epochs: int = typer.Option(0, "--freeze-epochs", help="Train only the new layers for N epochs first."),
    trust: bool = typer.Option(False, "--trust-checkpoint", help="Full pickle load of BASE (only if you trust it)."),
    identity_start: bool = typer.Option(
        True, "--identity-start/--no-identity-start", help="Start each inserted layer as the identity (gamma = 0)."
    ),
    hparam: list[str] = typer.Option([], "--hparam", "-p", help="Attention hyper-parameter key=value; repeatable."),
    attention_recipe: str = typer.Option(
        "default",
        "--attention-recipe",
        help="default (attention warm-up 1 epoch when epochs >= 2, new tensors at lr0 x 100, gamma x 300) or none.",
    ),
    attention_warmup: int | None = typer.Option(
        None, "--attention-warmup", help="Epochs that train only the new tensors first (default: 1 if epochs >= 2)."
    ),
    new_lr_scale: float | None = typer.Option(None, "--new-lr-scale", help="lr0 factor of the new tensors (100)."),
    gamma_lr_scale: float | None = typer.Option(None, "--gamma-lr-scale", help="lr0 factor of gamma (300)."),
) -> None:
    """Fine-tune BASE with attention inserted: every base weight kept, trained by Ultralytics' trainer.

    Extra key=value arguments go to Ultralytics' training (epochs=30 imgsz=640 device=0 project=runs name=cbam);
    data=PATH is the same as --data PATH.

    The attention recipe (--attention-recipe default): the new tensors train at lr0 x 100 and gamma at lr0 x 300,
    after a 1-epoch attention warm-up (transferred tensors frozen) when epochs >= 2 and no --freeze-epochs;
    --attention-recipe none is Ultralytics' own schedule (gamma at lr0 x 10).

    The run folder also gets attnyolo_gamma.csv (gamma per epoch) and attnyolo_transfer.txt.
    """
    from rich.table import Table

    from attnyolo.finetune import finetune
    from attnyolo.finetune.recipe import recipe_with  # with finetune: the package pulls in Ultralytics (slow --help)

    data, extra = take_data(data, list(ctx.args))
    names = [n.strip() for n in name.split(",") if n.strip()]
    yolo_args = parse_yolo_args(extra)
    recipe = recipe_with(
        attention_recipe,
        yolo_args.get("epochs"),
        freeze_epochs,
        warmup_epochs=attention_warmup,
        new_lr_scale=new_lr_scale,
        gamma_lr_scale=gamma_lr_scale,
    )
    result = finetune(
        base,
        names[0] if len(names) == 1 else names,
        parse_where(where),
        data,
        trust=trust,
        freeze_epochs=freeze_epochs,
        identity_start=identity_start,
        hparams=parse_hparams(hparam),
        recipe=recipe,
        **yolo_args,
    )
    console = make_console()
    from attnyolo.finetune import gamma_values

    values = gamma_values(result.model)
    if values:
        table = Table(title="identity-start gamma in best.pt (EMA)", box=None, header_style="bold")
        for col in ("layer", "attention", "gamma"):
            table.add_column(col, justify="right" if col != "attention" else "left")
        for i, attention, g in values:
            table.add_row(str(i), attention, f"{g:.6g}")
        console.print(table)
        console.print(f"gamma per epoch: {result.gamma_csv}")
    console.print(f"transfer report: {result.save_dir / 'attnyolo_transfer.txt'}")
    console.print(f"best: {result.best}")


YOLOV5_MODEL_MODULES = {"models.yolo", "yolov5.models.yolo"}  # module of the original YOLOv5's DetectionModel


def transfer_command(
    edited: str = typer.Argument(..., help="The edited model YAML (from `attnyolo insert`)."),
    base: Path = typer.Argument(..., help="Base checkpoint: .pt (Ultralytics or state dict) or .safetensors."),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Output: .pt (Ultralytics checkpoint; YOLOv5's for a YOLOv5 YAML) or .safetensors."
    ),
    nc: int | None = typer.Option(None, "--nc", help="Classes (default: the base checkpoint's, else the YAML's)."),
    strict: bool = typer.Option(False, "--strict", help="Fail also on the head's class convs (other class count)."),
    allow_partial: bool = typer.Option(
        False, "--allow-partial", help="Accept leaving behind base tensors that have a place in EDITED."
    ),
    trust: bool = typer.Option(False, "--trust-checkpoint", help="Full pickle load of BASE (only if you trust it)."),
    per_tensor: bool = typer.Option(False, "--per-tensor", help="One table row per tensor instead of per layer."),
) -> None:
    """Build EDITED and fill it with BASE's weights, layer by layer; print the report.

    BASE may be the base model or an edited one (the same or another attention, placement): the two
    architectures are aligned. A transfer that would leave weights behind stops, unless --allow-partial.
    """
    from attnyolo.checkpoints import save_safetensors, save_ultralytics_checkpoint
    from attnyolo.graph import load
    from attnyolo.hosts.build import build
    from attnyolo.weights import load_source, transfer

    source = load_source(base, trust=trust)  # the path keeps a .safetensors' architecture for the alignment
    if nc is None and isinstance(source.cfg, dict):
        nc = source.cfg.get("nc")
    cfg = load(edited)
    if nc is not None:
        cfg["nc"] = nc  # build for nc without Ultralytics' "overriding nc" notice
    model = build(cfg, nc=nc)
    if source.names and len(source.names) == model.yaml.get("nc"):
        model.names = source.names
    report = transfer(model, source, strict=strict, allow_partial=allow_partial)
    report.source = str(base)
    console = make_console()
    console.print(report.as_table(per_tensor=per_tensor))
    meta = {"base": str(base), "edited": str(edited), "transfer": report.counts}
    if output.suffix == ".safetensors":
        save_safetensors(model, output)
    elif type(model).__module__ in YOLOV5_MODEL_MODULES:  # built by YOLOv5's own Model: its checkpoint format
        from attnyolo.hosts.yolov5 import save_yolov5_checkpoint  # optional host, present since it built the model

        save_yolov5_checkpoint(model, output, meta)
    else:
        save_ultralytics_checkpoint(model, output, meta)
    console.print(f"wrote {output}")


def convert_command(
    source: Path = typer.Argument(..., help="Input: .pt (Ultralytics checkpoint) or .safetensors (attnyolo)."),
    output: Path = typer.Argument(..., help="Output: .safetensors for a .pt input, .pt for a .safetensors input."),
    trust: bool = typer.Option(False, "--trust-checkpoint", help="Full pickle load of a .pt (only if you trust it)."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite OUTPUT if it exists."),
) -> None:
    """Convert a model between .pt and .safetensors, through the safe loaders.

    A .pt becomes a pickle-free .safetensors (tensors plus the architecture); a .safetensors becomes an
    Ultralytics checkpoint that YOLO("x.pt") and `attnyolo yolo ... model=x.pt` load.
    """
    from attnyolo.checkpoints.convert import convert

    if output.exists() and not force:
        raise ConvertError(f"{output} exists; pass --force to overwrite it, or give another name")
    written, tensors = convert(source, output, trust=trust)
    make_console().print(f"wrote {written} ({tensors} tensors)")


def register_commands(app: typer.Typer) -> None:
    """Add ``finetune``, ``transfer`` and ``convert`` to ``app``."""
    app.command(
        "finetune",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(finetune_command)
    app.command("transfer")(transfer_command)
    app.command("convert")(convert_command)
