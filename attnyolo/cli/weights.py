"""CLI commands of the weight layer: ``attnyolo finetune`` and ``attnyolo transfer``.

``register_commands(app)`` adds both to a Typer app (the main ``attnyolo`` CLI wires them in)::

    attnyolo finetune runs/detect/train/weights/best.pt cbam --where neck --data data.yaml epochs=30 imgsz=320
    attnyolo transfer yolov8n-cbam.yaml runs/detect/train/weights/best.pt -o yolov8n-cbam-start.pt

Errors (a checkpoint that is missing, damaged, unsafe or of another architecture; a bad placement or argument)
reach :func:`attnyolo.cli.main` as attnyolo errors and are printed as one line.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from attnyolo.cli.args import make_console, parse_hparams, parse_where, parse_yolo_args


def finetune_command(
    ctx: typer.Context,
    base: Path = typer.Argument(..., help="Base checkpoint: an Ultralytics .pt (best.pt) or an attnyolo .safetensors."),
    name: str = typer.Argument(..., help="Attention name(s) from `attnyolo list`; several as cbam,se (chained)."),
    where: str = typer.Option("neck", "--where", "-w", help="neck (default), backbone, before_head or IDX,..."),
    data: Path = typer.Option(..., "--data", "-d", help="Data YAML (`attnyolo data default`: the embedded one)."),
    freeze_epochs: int = typer.Option(0, "--freeze-epochs", help="Train only the new layers for N epochs first."),
    trust: bool = typer.Option(False, "--trust-checkpoint", help="Full pickle load of BASE (only if you trust it)."),
    identity_start: bool = typer.Option(
        True, "--identity-start/--no-identity-start", help="Start each inserted layer as the identity (gamma = 0)."
    ),
    hparam: list[str] = typer.Option([], "--hparam", "-p", help="Attention hyper-parameter key=value; repeatable."),
) -> None:
    """Fine-tune BASE with attention inserted: every base weight kept, trained by Ultralytics' trainer.

    Extra key=value arguments go to Ultralytics' training (epochs=30 imgsz=640 device=0 project=runs name=cbam).

    The run folder also gets attnyolo_gamma.csv (gamma per epoch) and attnyolo_transfer.txt.
    """
    from rich.table import Table

    from attnyolo.finetune import finetune

    names = [n.strip() for n in name.split(",") if n.strip()]
    result = finetune(
        base,
        names[0] if len(names) == 1 else names,
        parse_where(where),
        data,
        trust=trust,
        freeze_epochs=freeze_epochs,
        identity_start=identity_start,
        hparams=parse_hparams(hparam),
        **parse_yolo_args(list(ctx.args)),
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


def _save_pt(model: Any, path: Path, meta: dict) -> None:
    """An Ultralytics-style checkpoint (``YOLO(path)`` loads it), written atomically."""
    import torch
    from ultralytics import __version__ as ultralytics_version

    from attnyolo.atomic import write_atomically

    ckpt = {"model": model, "train_args": {}, "date": datetime.now(UTC).isoformat()}
    write_atomically(path, lambda tmp: torch.save({**ckpt, "version": ultralytics_version, "attnyolo": meta}, tmp))


def transfer_command(
    edited: str = typer.Argument(..., help="The edited model YAML (from `attnyolo insert`)."),
    base: Path = typer.Argument(..., help="Base checkpoint: .pt (Ultralytics or state dict) or .safetensors."),
    output: Path = typer.Option(..., "--output", "-o", help="Output: .pt (Ultralytics checkpoint) or .safetensors."),
    nc: int | None = typer.Option(None, "--nc", help="Classes (default: the base checkpoint's, else the YAML's)."),
    strict: bool = typer.Option(False, "--strict", help="Fail if any base tensor would be left behind."),
    trust: bool = typer.Option(False, "--trust-checkpoint", help="Full pickle load of BASE (only if you trust it)."),
    per_tensor: bool = typer.Option(False, "--per-tensor", help="One table row per tensor instead of per layer."),
) -> None:
    """Build EDITED and fill it with BASE's weights through the insertion's index map; print the report."""
    from attnyolo.checkpoints import load_checkpoint, save_safetensors
    from attnyolo.graph import build, load
    from attnyolo.models import checkpoint_model
    from attnyolo.weights import transfer

    ckpt = load_checkpoint(base, trust=trust)
    net = checkpoint_model(ckpt)
    base_names = dict(getattr(net, "names", None) or {})
    if nc is None and net is not None and isinstance(getattr(net, "yaml", None), dict):
        nc = net.yaml.get("nc")
    cfg = load(edited)
    if nc is not None:
        cfg["nc"] = nc  # build for nc without Ultralytics' "overriding nc" notice
    model = build(cfg, nc=nc)
    if base_names and len(base_names) == model.yaml.get("nc"):
        model.names = base_names
    report = transfer(model, ckpt, strict=strict)
    report.source = str(base)
    console = make_console()
    console.print(report.as_table(per_tensor=per_tensor))
    meta = {"base": str(base), "edited": str(edited), "transfer": report.counts}
    if output.suffix == ".safetensors":
        save_safetensors(model, output)
    else:
        _save_pt(model.eval(), output, meta)
    console.print(f"wrote {output}")


def register_commands(app: typer.Typer) -> None:
    """Add ``finetune`` and ``transfer`` to ``app``."""
    app.command(
        "finetune",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(finetune_command)
    app.command("transfer")(transfer_command)
