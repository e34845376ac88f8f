"""Progress of a grid: a rich display on a terminal (runs done / total, ETA, current run's epoch), plain lines
otherwise (CI logs, files)."""

from __future__ import annotations

import time
from typing import Any


class GridProgress:
    """Reports ``start``/``epoch``/``finish`` of runs; use as a context manager.

    Args:
        total: runs in the grid.
        done: runs already done (resume).
        console: a rich ``Console`` (default: a new one on stdout).
    """

    def __init__(self, total: int, done: int = 0, console: Any = None) -> None:
        from rich.console import Console

        self.console = console or Console()
        self.total, self.done, self.failed = total, done, 0
        self.t0 = time.monotonic()
        self.finished_here = 0
        self.live = self.console.is_terminal
        self._progress = None

    def __enter__(self) -> GridProgress:
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._progress.start()
            self._grid = self._progress.add_task("grid", total=self.total, completed=self.done)
            self._run = self._progress.add_task("run", total=1, visible=False)
        else:
            self.console.print(f"ablate: {self.done}/{self.total} runs done, {self.total - self.done} to run")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()

    def _eta(self) -> str:
        if not self.finished_here:
            return "?"
        left = (self.total - self.done - self.failed) * (time.monotonic() - self.t0) / self.finished_here
        return f"{left / 60:.1f} min"

    def start(self, run_id: str) -> None:
        if self._progress is not None:
            self._progress.update(self._run, description=run_id, completed=0, total=1, visible=True)
        else:
            self.console.print(f"ablate: start {run_id}")

    def epoch(self, run_id: str, epoch: int, epochs: int) -> None:
        if self._progress is not None:
            self._progress.update(self._run, description=f"{run_id} epoch", completed=epoch, total=epochs)
        else:
            self.console.print(f"ablate: {run_id} epoch {epoch}/{epochs}")

    def finish(self, run_id: str, ok: bool, detail: str = "") -> None:
        self.finished_here += 1
        if ok:
            self.done += 1
        else:
            self.failed += 1
        if self._progress is not None:
            self._progress.update(self._grid, completed=self.done + self.failed)
            self._progress.console.print(f"{'done' if ok else 'FAILED'} {run_id} {detail}")
        else:
            self.console.print(
                f"ablate: [{self.done + self.failed}/{self.total}] {'done' if ok else 'FAILED'} {run_id} {detail} "
                f"(ETA {self._eta()})",
                markup=False,
            )
