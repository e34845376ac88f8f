"""The terminal console every printed table goes through (the CLI, the report, the demo)."""

from __future__ import annotations

from rich.console import Console


def make_console() -> Console:
    """A rich Console that gives files and pipes at least 160 columns (as ``--help``), so tables are never cut."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 160)
    return console
