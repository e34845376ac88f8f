"""The README's zoo table, generated from the registry (``python -m attnyolo.docs_table --write``).

A test checks that README.md holds exactly what this prints, so the docs cannot drift from the code.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from attnyolo.registry import CATEGORIES, specs

START, END = "<!-- zoo-table:start -->", "<!-- zoo-table:end -->"


def zoo_table() -> str:
    """Markdown table of every zoo module, grouped by survey category."""
    lines = [
        "| category | name | paper | year | frames | batch-1 train | ONNX |",
        "|---|---|---|---|---|---|---|",
    ]
    order = {c: i for i, c in enumerate(CATEGORIES)}
    for s in sorted(specs(), key=lambda s: (order[s.category], s.name)):
        paper = f"[{s.paper}]({s.url})" if s.url else s.paper
        flags = ["yes" if s.needs_frames else "", "yes" if s.batch1_train else "no", "yes" if s.onnx else "no"]
        lines.append(f"| {s.category} | `{s.name}` | {paper} | {s.year} | {' | '.join(flags)} |")
    return "\n".join(lines)


def replace_in(text: str) -> str:
    """``text`` with the block between the zoo-table markers replaced by the current table."""
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{zoo_table()}\n{END}{tail}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, nargs="?", const=Path("README.md"), help="update this file in place")
    args = parser.parse_args()
    if args.write:
        args.write.write_text(replace_in(args.write.read_text()))
    else:
        print(zoo_table())
