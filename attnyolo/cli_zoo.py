"""``attnyolo list`` and ``attnyolo describe``: the zoo's registry printed as tables."""

from __future__ import annotations

import typer
from rich.console import Console
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
    for col in ("name", "category", "paper", "year", "frames", "batch-1 train", "onnx"):
        table.add_column(col)
    for spec in specs():
        if spec.name in names:
            table.add_row(
                spec.name,
                spec.category,
                spec.paper,
                str(spec.year),
                _yes(spec.needs_frames),
                _yes(spec.batch1_train),
                _yes(spec.onnx),
            )
    console.print(table)


def describe_module(name: str = typer.Argument(..., help="A name from `attnyolo list`.")) -> None:
    """Show one module's spec: paper, defaults, constraints, reference."""
    spec = describe(name)
    table = Table(title=f"{spec.name}: {spec.summary}", show_header=False)
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
            table.add_row(key, value)
    console.print(table)


def register_commands(app: typer.Typer) -> None:
    app.command("list")(list_modules)
    app.command("describe")(describe_module)
