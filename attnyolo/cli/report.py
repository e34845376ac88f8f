"""CLI command ``attnyolo report GRID_DIR``: redraw a grid's report from its results database alone.

``register_commands(app)`` adds it to the main Typer app. A folder without ``ablate.sqlite``, a database with
no finished run, or one of another schema version is one line on stderr (exit 2), never a traceback.
"""

from __future__ import annotations

from pathlib import Path

import typer


def report_command(
    grid_dir: Path = typer.Argument(..., help="A grid folder written by `attnyolo ablate` (holds ablate.sqlite)."),
    resamples: int = typer.Option(10_000, "--resamples", help="Bootstrap resamples."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap's random draws."),
    alpha: float = typer.Option(0.05, "--alpha", help="Family-wise error rate (Holm) of the verdicts."),
    gallery: int = typer.Option(4, "--gallery", help="Validation images in the baseline-vs-variant gallery (0: none)."),
) -> None:
    """Write GRID_DIR/report.md and a self-contained GRID_DIR/report.html (verdicts, plots, recipe)."""
    from attnyolo.console import make_console
    from attnyolo.report import print_table, write_report

    a, md, page = write_report(grid_dir, resamples=resamples, seed=seed, alpha=alpha, gallery=gallery)
    console = make_console()
    print_table(a, console)
    console.print(f"report: {page}\nmarkdown: {md}")


def register_commands(app: typer.Typer) -> None:
    app.command("report")(report_command)
