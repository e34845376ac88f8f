"""``attnyolo list`` and ``attnyolo describe``: the zoo's registry printed as tables."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from attnyolo.registry import CATEGORIES, describe, specs

console = Console()


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def list_modules(
    category: str | None = typer.Option(None, "--category", "-c", help=f"One of: {', '.join(CATEGORIES)}."),
) -> None:
    """List the attention modules in the zoo."""
    from attnyolo.registry import available

    names = set(available(category))
    table = Table(title=f"attnyolo zoo: {len(names)} modules" + (f" ({category})" if category else ""))
    rows = [
        (s.name, s.category, str(s.year), _yes(s.needs_frames), _yes(s.batch1_train), _yes(s.onnx), escape(s.paper))
        for s in specs()
        if s.name in names
    ]
    headers = ("name", "category", "year", "frames", "batch-1", "onnx")
    widths = [max([len(col)] + [len(r[i]) for r in rows]) for i, col in enumerate(headers)]
    for col, width in zip(headers, widths, strict=True):
        table.add_column(col, no_wrap=True, min_width=width)
    # Only the paper title is shortened on a narrow terminal (7 columns: 3 border characters each + 1).
    room = max(12, console.width - sum(widths) - 3 * (len(headers) + 1) - 1)
    table.add_column("paper", no_wrap=True)
    for *row, paper in rows:
        table.add_row(*row, paper if len(paper) <= room else paper[: room - 1] + "…")
    console.print(table)


def describe_module(name: str = typer.Argument(..., help="A name from `attnyolo list`.")) -> None:
    """Show one module's spec: paper, defaults, constraints, reference."""
    spec = describe(name)
    table = Table(title=escape(f"{spec.name}: {spec.summary}"), show_header=False)
    rows = {
        "class": f"{spec.cls.__module__}.{spec.cls.__qualname__}",
        "category": spec.category,
        "paper": f"{spec.paper} ({spec.year})",
        "url": spec.url,
        "defaults": ", ".join(f"{k}={v!r}" for k, v in spec.defaults.items()) or "(none)",
        "needs frames": _yes(spec.needs_frames),
        "batch-1 train": _yes(spec.batch1_train),
        "onnx": _yes(spec.onnx) + (f" ({spec.onnx_note})" if spec.onnx_note else ""),
        "constraints": spec.constraints,
        "reference": spec.reference,
        "notes": spec.notes,
    }
    for key, value in rows.items():
        if value:
            table.add_row(key, escape(value))
    console.print(table)


def register_commands(app: typer.Typer) -> None:
    app.command("list")(list_modules)
    app.command("describe")(describe_module)
