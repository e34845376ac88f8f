"""The report of an ablation grid: ``report.md`` and a self-contained ``report.html``, drawn from the database alone.

:func:`write_report` (CLI: ``attnyolo report GRID_DIR``) reads ``GRID_DIR/ablate.sqlite`` and each run's
``val_stats.npz``, computes the verdicts (:mod:`attnyolo.report.stats`), draws the figures (:mod:`.plots`) and writes
``GRID_DIR/report.md`` (figures in ``GRID_DIR/report_figures/``) and ``GRID_DIR/report.html`` (figures embedded).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from attnyolo.report.analysis import Analysis, ReportError, analyse, control_warnings
from attnyolo.report.render import HEADERS, table_rows

TERMINAL_COLUMNS = (
    "variant",
    "Δparams",
    "latency ×",
    "mAP50-95 (mean ± std)",
    "Δ mAP50-95 [interval]",
    "verdict",
    "max |γ|",
    "engagement r",
)


def stderr_progress(line: str) -> None:
    """A progress line of the report on stderr (stdout keeps the table and the paths)."""
    print(f"attnyolo report: {line}", file=sys.stderr, flush=True)


def write_report(
    grid_dir: str | os.PathLike,
    *,
    resamples: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
    gallery: int = 4,
    progress: Callable[[str], None] | None = stderr_progress,
) -> tuple[Analysis, Path, Path]:
    """Analyse a grid folder and write its report; returns (the analysis, report.md, report.html).

    ``gallery``: how many validation images the gallery compares (baseline against each variant); 0 for none.
    ``progress``: called with one line per step (bootstrap k/N, figures, gallery; a report takes a minute or
    more); stderr by default, ``None`` for silence.

    Raises:
        ReportError: nothing finished yet, or no finished baseline.
        attnyolo.experiments.store.StoreNotFoundError / SchemaError: no database, or one of another schema version.
    """
    from attnyolo.report import plots, render

    if resamples < 1:
        raise ReportError(f"resamples must be a positive count, got {resamples}")
    if not 0 < alpha < 1:
        raise ReportError(f"alpha must lie between 0 and 1, got {alpha}")
    say = progress or (lambda _line: None)
    t0 = time.monotonic()
    a = analyse(grid_dir, resamples=resamples, seed=seed, alpha=alpha, progress=progress)
    say(f"figures (forest, accuracy vs cost, curves, per class, γ), {time.monotonic() - t0:.0f} s")
    figures, notes = plots.all_figures(a), []
    if gallery > 0:
        from attnyolo.report.gallery import gallery_figures

        say(f"gallery: {gallery} validation images x {len(a.rows) - 1} variant(s), {time.monotonic() - t0:.0f} s")
        pictures, note = gallery_figures(a, images=gallery)
        figures.update(pictures)
        if not pictures:
            notes.append(f"no gallery: {note}")
            say(f"no gallery: {note}")
    md, page = render.write(a, figures, notes)
    say(f"written in {time.monotonic() - t0:.0f} s")
    return a, md, page


def print_table(a: Analysis, console=None, title: str | None = None) -> None:
    """The verdict table on the terminal (rich)."""
    from rich.markup import escape
    from rich.table import Table

    from attnyolo.console import make_console

    console = console or make_console()
    table = Table(title=title or f"attnyolo verdicts: {a.folder}")
    keep = [HEADERS.index(h) for h in TERMINAL_COLUMNS]
    for i in keep:
        h = HEADERS[i]
        wraps = h in ("verdict", "engagement r")  # the long cells wrap; the verdict never shrinks to nothing
        table.add_column(
            h,
            justify="left" if h in ("variant", "verdict") else "right",
            no_wrap=not wraps,
            min_width=22 if h == "verdict" else None,
        )
    for cells in table_rows(a):
        table.add_row(*(cells[i] for i in keep))
    console.print(table)
    for warning in control_warnings(a):
        console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)


__all__ = ["Analysis", "ReportError", "analyse", "print_table", "stderr_progress", "write_report"]
