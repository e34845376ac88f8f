"""CLI command ``attnyolo demo`` (``make demo``): the attention ablation on the embedded data, with verdicts.

``register_commands(app)`` adds it to the main Typer app. Extra ``key=value`` arguments go to Ultralytics'
training, replacing the demo recipe's (``attnyolo demo epochs=3 imgsz=256``); ``data=PATH`` works like ``--data``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from attnyolo.cli.args import parse_yolo_args
from attnyolo.console import make_console


def demo_command(
    ctx: typer.Context,
    quick: bool = typer.Option(False, "--quick", help="A first look in ~2 minutes: 2 variants, 1 seed, 1 epoch."),
    data: Path | None = typer.Option(None, "--data", "-d", help="Data YAML (default: the embedded BCCD data)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Grid folder (default runs/attnyolo/demo[-quick])."),
    seeds: int | None = typer.Option(None, "--seeds", help="Seeds per variant (default 2; --quick: 1)."),
    resamples: int = typer.Option(10_000, "--resamples", help="Bootstrap resamples of the verdicts."),
    workers: int | None = typer.Option(None, "--workers", help="Runs at once (default: one per core, at most 4)."),
) -> None:
    """Fine-tune the shipped base with attention in the neck and backbone, and say what helps, at what cost.

    Baseline + se, eca, cbam, coord, simam in the neck + cbam in the backbone, 2 seeds each, one shared recipe;
    prints the verdict table and the path of report.html. Running it again resumes the same grid folder.
    Extra key=value arguments go to Ultralytics' training (epochs=3 imgsz=256 device=0).
    """
    from attnyolo.experiments.demo import DemoError, run_demo
    from attnyolo.experiments.driver import GridInterrupted

    yolo_args = parse_yolo_args(list(ctx.args))
    if "data" in yolo_args:
        if data is not None:
            raise DemoError("give the data once: --data PATH or data=PATH")
        data = Path(str(yolo_args.pop("data")))
    try:
        run_demo(
            data,
            quick=quick,
            out=out,
            seeds=seeds,
            resamples=resamples,
            workers=workers,
            console=make_console(),
            **yolo_args,
        )
    except GridInterrupted as e:  # Ctrl-C: one line, what was kept and how to go on (typer would exit silently)
        typer.echo(f"attnyolo: {e}", err=True)
        raise typer.Exit(130) from None


def register_commands(app: typer.Typer) -> None:
    app.command("demo", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(demo_command)
