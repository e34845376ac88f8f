"""``attnyolo ablate``: a grid of attention variants x seeds with one recipe, into a resumable results folder.

::

    attnyolo ablate --weights base.pt --data data.yaml -a se,cbam,simam --seeds 2 -o runs/ablate epochs=10 imgsz=320
    attnyolo ablate grid.yaml -o runs/ablate          # the same grid from a YAML file
    attnyolo ablate -o runs/ablate --resume           # continue the folder's own grid.yaml
    attnyolo ablate --host yolov5 --weights yolov5n.pt --data data.yaml -a se -o runs/v5 epochs=1 imgsz=64

Extra ``key=value`` arguments are the host's training arguments (the recipe shared by every run): Ultralytics'
(``batch=8``), or with ``--host yolov5`` YOLOv5 ``train.py``'s (``batch_size=8``). A new Ultralytics grid with
``--weights`` fine-tunes under the default attention recipe (``attnyolo.finetune.recipe.default_recipe``; the
control too); ``--attention-recipe none`` opts out, ``--attention-warmup`` / ``--new-lr-scale`` /
``--gamma-lr-scale`` change its knobs. A resumed folder keeps the recipe it was stored with.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import typer

from attnyolo.cli.args import RECIPE_HELP, attention_recipe_option, parse_hparams, parse_where, parse_yolo_args
from attnyolo.console import make_console


def _where(items: list[str]) -> list[Any] | None:
    out = []
    for item in items:
        region, _, after = item.partition("after=")
        if after:  # "after=C2f" or "backbone:after=C2f"
            region = region.rstrip(":, ")
            out.append({"after": after.strip()} | ({"where": parse_where(region)} if region else {}))
        else:
            out.append(parse_where(item))
    return out or None


def _seeds(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()] if "," in text else int(text)
    except ValueError:
        return text  # the grid resolver names the bad value


def results_table(store: Any):
    """A rich table of the grid: one row per variant (mean ± std over its done seeds), baseline first."""
    from rich.table import Table

    rows = store.runs("done")
    table = Table(title=f"ablation grid: {store.folder}", header_style="bold")
    for col in ("variant", "seeds", "mAP50", "mAP50-95", "params", "GFLOPs", "latency ms", "x baseline", "train s"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    by_variant: dict[str, list[dict]] = {}
    for r in rows:
        by_variant.setdefault(r["variant"], []).append(r)

    def ms(values: list[float], fmt: str) -> str:
        if len(values) < 2:
            return format(values[0], fmt)
        return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"

    for variant, runs in by_variant.items():
        table.add_row(
            variant,
            str(len(runs)),
            ms([r["map50"] for r in runs], ".4f"),
            ms([r["map50_95"] for r in runs], ".4f"),
            f"{runs[0]['params']:,}",
            f"{runs[0]['gflops']:.3f}",
            ms([r["latency_ms"] for r in runs], ".1f"),
            ms([r["latency_ratio"] for r in runs], ".3f"),
            ms([r["train_seconds"] for r in runs], ".0f"),
        )
    return table


def ablate_command(
    ctx: typer.Context,
    grid: str | None = typer.Argument(None, help="Grid YAML (optional; flags override its keys)."),
    attention: list[str] = typer.Option([], "--attention", "-a", help="Attention name(s): se,cbam; repeatable."),
    where: list[str] = typer.Option(
        [],
        "--where",
        "-w",
        help="neck (default), backbone, before_head, IDX,IDX or after=TYPE; repeatable (each is one placement).",
    ),
    hparam: list[str] = typer.Option([], "--hparam", "-p", help="Hyper-parameter key=value for every variant."),
    seeds: str | None = typer.Option(None, "--seeds", "-s", help="A count (3: seeds 0,1,2) or a list (0,5,7)."),
    model: str | None = typer.Option(None, "--model", "-m", help="Train from scratch from this model YAML."),
    weights: Path | None = typer.Option(None, "--weights", help="Fine-tune every run from this base checkpoint."),
    data: Path | None = typer.Option(None, "--data", "-d", help="Data YAML (`attnyolo data default`)."),
    out: Path = typer.Option(Path("runs/ablate"), "--out", "-o", help="Grid folder (results database, runs)."),
    resume: bool = typer.Option(False, "--resume", help="Continue OUT's grid (re-running the same command does too)."),
    executor: str = typer.Option("local", "--executor", help="local (default) or ray."),
    address: str | None = typer.Option(
        None, "--address", help="Ray address: HOST:PORT of a head, auto, ray://HOST:10001."
    ),
    ray_timeout: float = typer.Option(
        60.0, "--ray-timeout", help="Seconds for Ray to start or answer, and for its first run to start."
    ),
    workers: int = typer.Option(1, "--workers", help="Local worker processes (1: sequential)."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write OUT/report.html when the grid completes."),
    threads: int | None = typer.Option(None, "--threads", help="Torch threads per run (default: cores / workers)."),
    identity_start: bool | None = typer.Option(
        None, "--identity-start/--no-identity-start", help="Start each inserted layer as the identity (default on)."
    ),
    trust: bool | None = typer.Option(None, "--trust-checkpoint", help="Full pickle load of the base checkpoint."),
    attention_recipe: str | None = typer.Option(None, "--attention-recipe", help=RECIPE_HELP["attention_recipe"]),
    attention_warmup: int | None = typer.Option(None, "--attention-warmup", help=RECIPE_HELP["attention_warmup"]),
    new_lr_scale: float | None = typer.Option(None, "--new-lr-scale", help=RECIPE_HELP["new_lr_scale"]),
    gamma_lr_scale: float | None = typer.Option(None, "--gamma-lr-scale", help=RECIPE_HELP["gamma_lr_scale"]),
    host: str | None = typer.Option(
        None, "--host", help="ultralytics (default) or yolov5: the original YOLOv5 v7.0 and its train.py."
    ),
    yolov5: Path | None = typer.Option(
        None, "--yolov5", help="--host yolov5: a v7.0 clone (default: $ATTNYOLO_YOLOV5, else the yolov5 package)."
    ),
) -> None:
    """Run a grid: baseline + attention x placement x hyper-parameters, x seeds, one Ultralytics recipe.

    Results go to OUT/ablate.sqlite (one row per run), OUT/grid.yaml and OUT/runs/<run_id>/ (Ultralytics'
    folder, attnyolo_gamma.csv, val_stats.npz). Running it again on OUT resumes: finished runs are kept.
    """
    from attnyolo.experiments.driver import GridInterrupted, ablate
    from attnyolo.experiments.store import DB_NAME

    extra = list(ctx.args)
    if grid is not None and "=" in grid and not Path(grid).is_file():  # `attnyolo ablate epochs=3 ...`
        extra.insert(0, grid)
        grid = None
    recipe = parse_yolo_args(extra)
    options: dict[str, Any] = {
        "attention": [a for item in attention for a in item.split(",") if a.strip()] or None,
        "where": _where(where),
        "hparams": parse_hparams(hparam) or None,
        "seeds": _seeds(seeds),
        "model": model,
        "weights": None if weights is None else str(weights),
        "data": None if data is None else str(data),
        "identity_start": identity_start,
        "trust": trust,
        "host": host,
        "yolov5": None if yolov5 is None else str(yolov5),
    }
    options = {k: v for k, v in options.items() if v is not None}
    if recipe:
        if grid is not None:
            from attnyolo.experiments.driver import load_grid_yaml

            recipe = {**(load_grid_yaml(grid).get("recipe") or {}), **recipe}
        options["recipe"] = recipe
    if any(v is not None for v in (attention_warmup, new_lr_scale, gamma_lr_scale)):
        from attnyolo.experiments.driver import load_grid_yaml

        epochs = (options.get("recipe") or (load_grid_yaml(grid).get("recipe") if grid else None) or {}).get("epochs")
    else:
        epochs = None
    chosen = attention_recipe_option(attention_recipe, epochs, attention_warmup, new_lr_scale, gamma_lr_scale)
    if chosen is not None:
        options["attention_recipe"] = chosen
    if resume and not (out / DB_NAME).is_file():
        from attnyolo.experiments.grid import GridError

        start = f"attnyolo ablate -o {out}" if (out / "grid.yaml").is_file() else "give the grid (YAML or flags)"
        raise GridError(f"--resume: {out / DB_NAME} does not exist, nothing to resume; to start the grid: {start}")
    if resume and grid is None and not options and not (out / "grid.yaml").is_file():
        from attnyolo.experiments.grid import GridError

        raise GridError(f"--resume: {out} holds no grid.yaml; give the grid (YAML or flags) and --out")
    console = make_console()
    try:
        store = ablate(
            grid,
            out=out,
            executor=executor,
            workers=workers,
            threads=threads,
            address=address,
            ray_timeout=ray_timeout,
            console=console,
            **options,
        )
    except GridInterrupted as e:  # Ctrl-C: one line, what was kept and how to go on (typer would exit silently)
        typer.echo(f"attnyolo: {e}", err=True)
        raise typer.Exit(130) from None
    console.print(results_table(store))
    failed = store.runs("failed")
    for r in failed:
        console.print(f"FAILED {r['run_id']}: {r['error']}", markup=False)
    console.print(f"results: {store.path}")
    done = not store.runs("pending") and not store.runs("running") and not failed
    store.close()
    if failed:
        raise typer.Exit(1)
    if done and report:  # the grid is complete: its report, as `attnyolo report OUT` would redraw it
        from attnyolo.report import print_table, write_report

        analysis, _, page = write_report(out)
        print_table(analysis, console)
        console.print(f"report: {page}")


def register_commands(app: typer.Typer) -> None:
    """Add ``ablate`` to ``app``."""
    app.command("ablate", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(ablate_command)
