"""``attnyolo search``: which attention, where. Successive halving (Ray Tune's ASHA) over names x placements, then
the top candidates through a seeded ablate grid against the control.

::

    attnyolo search -a se,eca,cbam,coord -w neck,backbone,inside --weights base.pt --data data.yaml \\
        --budget-epochs 40 --top 3 --seeds 3 -o runs/search imgsz=320
    attnyolo search -o runs/search --resume      # continue the folder's own search

Extra ``key=value`` arguments are Ultralytics training arguments (every run's recipe; not ``epochs``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from attnyolo.cli.args import RECIPE_HELP, attention_recipe_option, parse_yolo_args
from attnyolo.console import make_console


def _names(items: list[str]) -> list[str] | None:
    return [s.strip() for item in items for s in item.split(",") if s.strip()] or None


def _seeds(text: str) -> Any:
    try:
        return [int(s) for s in text.split(",") if s.strip()] if "," in text else int(text)
    except ValueError:
        return text  # the grid resolver names the bad value


def search_command(
    ctx: typer.Context,
    attention: list[str] = typer.Option([], "--attention", "-a", help="Attention names: se,eca,cbam; repeatable."),
    where: list[str] = typer.Option(
        [], "--where", "-w", help="Placements: neck (default), backbone, before_head, inside; repeatable."
    ),
    weights: Path | None = typer.Option(None, "--weights", help="Fine-tune every candidate from this checkpoint."),
    model: str | None = typer.Option(None, "--model", "-m", help="Train from scratch from this model YAML."),
    data: Path | None = typer.Option(None, "--data", "-d", help="Data YAML (`attnyolo data default`)."),
    out: Path = typer.Option(Path("runs/search"), "--out", "-o", help="Search folder."),
    resume: bool = typer.Option(False, "--resume", help="Continue OUT's search with its own arguments."),
    grace: int = typer.Option(1, "--grace", help="Epochs of the first rung."),
    eta: int = typer.Option(3, "--eta", help="Reduction factor: each rung keeps the best 1/eta."),
    rungs: int | None = typer.Option(None, "--rungs", help="Number of rungs (default: what the budget allows, or 3)."),
    budget_epochs: int | None = typer.Option(None, "--budget-epochs", help="Total training epochs of the rungs."),
    budget_hours: float | None = typer.Option(None, "--budget-hours", help="Wall hours of the rungs (per session)."),
    top: int = typer.Option(3, "--top", "-k", help="Candidates confirmed against the control."),
    seeds: str = typer.Option("3", "--seeds", "-s", help="Seeds of the confirmation grid: a count or a list."),
    max_params: str | None = typer.Option(None, "--max-params", help="Added parameters: a count (20000) or 2%."),
    max_gflops_ratio: float | None = typer.Option(None, "--max-gflops-ratio", help="GFLOPs over the base's."),
    max_latency_ratio: float | None = typer.Option(None, "--max-latency-ratio", help="Latency over the base's."),
    seed: int = typer.Option(0, "--seed", help="Seed of every rung run."),
    concurrency: int = typer.Option(1, "--concurrency", help="Candidates training at once."),
    threads: int | None = typer.Option(None, "--threads", help="Torch threads (Ray CPUs) per candidate."),
    address: str | None = typer.Option(None, "--address", help="Ray address (default: a local instance)."),
    ray_cpus: int | None = typer.Option(None, "--ray-cpus", help="CPUs of the local Ray instance (default: all)."),
    confirm: bool = typer.Option(True, "--confirm/--no-confirm", help="Run the seeded confirmation grid."),
    attention_recipe: str | None = typer.Option(None, "--attention-recipe", help=RECIPE_HELP["attention_recipe"]),
    attention_warmup: int | None = typer.Option(None, "--attention-warmup", help=RECIPE_HELP["attention_warmup"]),
    new_lr_scale: float | None = typer.Option(None, "--new-lr-scale", help=RECIPE_HELP["new_lr_scale"]),
    gamma_lr_scale: float | None = typer.Option(None, "--gamma-lr-scale", help=RECIPE_HELP["gamma_lr_scale"]),
    freeze_epochs: int = typer.Option(0, "--freeze-epochs", help="Train only the new tensors for N epochs first."),
    identity_start: bool = typer.Option(True, "--identity-start/--no-identity-start", help="gamma = 0 start."),
    trust: bool = typer.Option(False, "--trust-checkpoint", help="Full pickle load of the base checkpoint."),
) -> None:
    """Which attention, where: successive halving over attention x placement under a budget and cost limits, on Ray
    Tune; the top candidates then go through a seeded ablate grid against the control, whose verdicts (intervals,
    Holm) are the result. Rung scores are single short runs; OUT/report.md says what each rung kept and cost."""
    from attnyolo.search.driver import load_arguments, search

    recipe = parse_yolo_args(list(ctx.args))
    if resume:
        options = load_arguments(out)
    else:
        options = {
            "attention": _names(attention),
            "where": _names(where) or ["neck"],
            "weights": None if weights is None else str(weights),
            "model": model,
            "data": None if data is None else str(data),
            "recipe": recipe,
            "grace": grace,
            "eta": eta,
            "rungs": rungs,
            "budget_epochs": budget_epochs,
            "budget_hours": budget_hours,
            "top": top,
            "seeds": _seeds(seeds),
            "max_params": max_params,
            "max_gflops_ratio": max_gflops_ratio,
            "max_latency_ratio": max_latency_ratio,
            "seed": seed,
            "confirm": confirm,
            "identity_start": identity_start,
            "trust": trust,
            # epochs are the rungs' (unknown here): the grid checks the warm-up against them
            "attention_recipe": attention_recipe_option(
                attention_recipe, None, attention_warmup, new_lr_scale, gamma_lr_scale
            ),
            "freeze_epochs": freeze_epochs,
        }
    console = make_console()
    result = search(
        **options,
        out=out,
        concurrency=concurrency,
        threads=threads,
        address=address,
        ray_num_cpus=ray_cpus,
        console=console,
    )
    for i, r in enumerate(result.ranking[: max(len(result.top), 10)]):
        console.print(f"{i + 1}. {r['label']}: rung {r['rung']} ({r['epoch']} epochs), mAP50-95 {r['map50_95']:.4f}")
    for label, error in result.failed.items():
        console.print(f"FAILED {label}: {error}", markup=False)
    if result.verdicts is not None:
        from attnyolo.report import print_table

        print_table(result.verdicts, console, title=f"search verdicts: top {len(result.top)} against the control")
    console.print(f"report: {result.report}")
    if result.failed:
        raise typer.Exit(1)


def register_commands(app: typer.Typer) -> None:
    """Add ``search`` to ``app``."""
    app.command("search", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(search_command)
