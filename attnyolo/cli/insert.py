"""CLI commands of the insertion engine: ``attnyolo insert`` and ``attnyolo yolo``.

``register_commands(app)`` adds both to a Typer app (the main ``attnyolo`` CLI wires them in)::

    attnyolo insert yolov8n.yaml cbam --where neck -o yolov8n-cbam.yaml
    attnyolo insert yolov8n.yaml cbam --inside          # inside the bottlenecks of the neck's C2f blocks
    attnyolo yolo train model=yolov8n-cbam.yaml data=data.yaml epochs=1
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from attnyolo.cli.args import parse_hparams, parse_where
from attnyolo.errors import AttnYoloError, one_line
from attnyolo.graph import api
from attnyolo.graph.channels import layer_channels, resolve_scale
from attnyolo.graph.checks import probe
from attnyolo.graph.errors import GraphError, HyperparameterError, UnknownModuleError
from attnyolo.graph.inside_modules import inner_params
from attnyolo.graph.inside_syntax import inside_rows, option_of
from attnyolo.graph.layers import attention_name, is_yolov5_original, layers, row_hparams
from attnyolo.graph.yaml_io import dump, flow, guess_scale, load
from attnyolo.registry import describe


def _fail(e: Exception) -> None:
    # Same line as attnyolo.cli.main prints; also when this group runs on its own (tests, other apps).
    typer.echo(f"attnyolo: error: {one_line(e)}", err=True)
    raise typer.Exit(2)


def placement_tag(where: str | None = None, after: str | None = None) -> str:
    """The placement as a file-name part: ``""`` for the default neck, ``"backbone"``, ``"before-head"``,
    ``"12-15"`` for layer indices, ``"after-C2f"``; so inserts at different places get different default names."""
    parts = []
    text = (where or "").strip()
    if text and text.lower().replace("-", "_") != "neck":
        parts.append(re.sub(r"[^A-Za-z0-9]+", "-", text.lower()).strip("-"))
    if after:
        parts.append(f"after-{re.sub(r'[^A-Za-z0-9]+', '-', after).strip('-')}")
    return "-".join(p for p in parts if p)


def default_output(base: str, scale: str, names: list[str], where: str | None = None, after: str | None = None) -> Path:
    """``yolov8.yaml`` + scale ``s`` + ``[cbam]`` -> ``yolov8s-cbam.yaml``: a name from which Ultralytics'
    ``guess_model_scale`` reads the scale back (it decides the scale ``YOLO("file.yaml")`` builds). A placement
    other than the default neck is named too: ``yolov8n-cbam-backbone.yaml``, ``yolov8n-cbam-12-15.yaml``."""
    stem = Path(base).stem
    if scale and guess_scale(stem) != scale:
        unscaled = re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", stem)  # yolov8n-seg -> yolov8-seg
        stem = re.sub(r"(\d+)", rf"\g<1>{scale}", unscaled, count=1) if re.search(r"\d", unscaled) else stem
    tag = placement_tag(where, after)
    return Path(f"{stem}-{'-'.join(names)}{'-' + tag if tag else ''}.yaml")


def _layer_params(cfg: dict, scale: str | None) -> list[int] | None:
    """Per-layer parameter counts of the built model (``None`` when Ultralytics cannot build it)."""
    if is_yolov5_original(cfg):
        return None
    from attnyolo.graph.ultralytics import build

    try:
        model = build(cfg, scale=scale)
    except (GraphError, KeyError, TypeError, ValueError, RuntimeError):
        return None
    return [int(m.np) for m in model.model]


def _short(value: Any, width: int = 28) -> str:
    text = flow(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def layer_table(base: dict, edited: dict, index_map: api.IndexMap, scale: str | None, title: str = ""):
    """A rich Table of ``edited``'s layers: new/old index, from (with the old one where it changed), module, args,
    output channels and parameters at ``scale``; inserted rows marked ``+`` and highlighted, blocks with attention
    inside marked ``in`` with their parameter growth (``+3,229``: the inner modules, gammas included)."""
    from rich.table import Table
    from rich.text import Text

    sc = resolve_scale(edited, scale)
    channels = layer_channels(edited, sc.name or None)
    params = _layer_params(edited, sc.name or None)
    base_rows = layers(base)
    old_of = index_map.inverse()
    table = Table(
        title=f"{title} at scale {sc.name}" if sc.name else title or None,
        show_lines=False,
        pad_edge=False,
        box=None,
        header_style="bold",
    )
    for col, justify in (("", "left"), ("#", "right"), ("was", "right"), ("from", "left"), ("n", "right"),
                         ("module", "left"), ("args", "left"), ("channels", "right"), ("params", "right")):  # fmt: skip
        table.add_column(col, justify=justify)
    for x in layers(edited):
        old = old_of.get(x.index)
        inserted = old is None
        frm = flow(x.from_)
        if not inserted and base_rows[old].from_ != x.from_:
            frm = f"{flow(x.from_)} <- {flow(base_rows[old].from_)}"
        c = channels[x.index]
        n_params: Any = params[x.index] if params is not None else None
        if n_params is None and inserted:
            hparams, _ = row_hparams(x.module, x.args)
            n_params = probe(describe(attention_name(x.module)), c.c_in, hparams, f"layer {x.index}")
        has_inside = option_of(x.args) is not None
        shown = "-" if n_params is None else f"{n_params:,}"
        if has_inside:
            shown += f" (+{inner_params(edited, x.index, sc.name or None):,})"
        cells = (
            "+" if inserted else "in" if has_inside else "",
            str(x.index),
            "" if inserted else str(old),
            frm,
            str(x.repeats),
            x.module,
            _short(x.args),
            "-" if c.kind == "head" else str(c.c_out),
            shown,
        )
        # Text, not str: "[nc]" would otherwise be read as rich markup and vanish
        table.add_row(*(Text(c) for c in cells), style="bold green" if inserted or has_inside else None)
    return table, params


@contextlib.contextmanager
def _argv(args: list[str]) -> Iterator[None]:
    # Ultralytics' entrypoint reads the module-level ARGV (a copy of sys.argv); setting it for the call keeps
    # arguments with spaces intact, which its debug="..." string (split on spaces) would not. Its help texts
    # quote the arguments received, formatted from sys.argv at import (["yolo", "yolo", "train"...] under
    # `attnyolo yolo`): they are re-quoted with the arguments Ultralytics really gets.
    import ultralytics.cfg as ucfg

    saved = ucfg.ARGV, ucfg.CLI_HELP_MSG, ucfg.SOLUTIONS_HELP_MSG
    ucfg.ARGV = ["yolo", *args]
    received = f"Arguments received: {['yolo', *saved[0][1:]]!s}"
    quoted = f"Arguments received: {['yolo', *args]!s}"
    ucfg.CLI_HELP_MSG = ucfg.CLI_HELP_MSG.replace(received, quoted)
    ucfg.SOLUTIONS_HELP_MSG = ucfg.SOLUTIONS_HELP_MSG.replace(received, quoted)
    try:
        yield
    finally:
        ucfg.ARGV, ucfg.CLI_HELP_MSG, ucfg.SOLUTIONS_HELP_MSG = saved


def insert_command(
    base: str = typer.Argument(..., help="Model YAML: a path or a bare Ultralytics name (yolov8n.yaml, yolo11s.yaml)."),
    name: str = typer.Argument(..., help="Attention name(s) from `attnyolo list`; several as cbam,se (chained)."),
    where: str | None = typer.Option(None, "--where", "-w", help="neck (default), backbone, before_head or IDX,..."),
    after: str | None = typer.Option(None, "--after", "-a", help="After every layer of this type (C2f, C3k2...)."),
    scale: str | None = typer.Option(None, "--scale", "-s", help="Scale for the table and for building (n, s...)."),
    output: str | None = typer.Option(
        None, "--output", "-o", help="Output YAML (default BASE-NAME[-PLACEMENT].yaml; - = stdout)."
    ),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite the output YAML if it exists."),
    hparam: list[str] = typer.Option([], "--hparam", "-p", help="Hyper-parameter key=value; repeat for more."),
    table: bool = typer.Option(True, "--table/--no-table", help="Print the before/after layer table."),
    identity_start: bool = typer.Option(
        True, "--identity-start/--no-identity-start", help="Start each inserted layer as the exact identity (gamma=0)."
    ),
    inside: bool = typer.Option(
        False, "--inside", help="Put the attention inside the bottlenecks of the chosen blocks (C2f, C3, C3k2...)."
    ),
) -> None:
    """Insert attention into a model YAML, renumber every reference, write the YAML, print the layer table."""
    from rich.console import Console

    try:
        names = [n.strip() for n in name.split(",") if n.strip()]
        base_cfg = load(base, scale=scale)
        cfg, index_map = api.insert(
            base,
            names,
            parse_where(where),
            after=after,
            scale=scale,
            identity_start=identity_start,
            inside=inside,
            **parse_hparams(hparam),
        )
        text = dump(cfg)
        chosen = resolve_scale(cfg, scale).name
        suggested = default_output(base, chosen, [*names, "inside"] if inside else names, where, after)
        out = Path(output) if output and output != "-" else suggested
        if output != "-" and out.exists() and not force:
            raise GraphError(f"{out} exists; pass --force to overwrite it, or -o another name")
        console = Console(stderr=output == "-", highlight=False)
        if not console.is_terminal:
            console.width = max(console.width, 120)  # files and pipes get the whole table on one line per row
        if table:
            tbl, params = layer_table(base_cfg, cfg, index_map, scale, f"{base} + {', '.join(names)}")
            console.print(tbl)
            if params is not None:
                before = _layer_params(base_cfg, scale)
                if before is not None:
                    delta = sum(params) - sum(before)
                    console.print(f"params {sum(before):,} -> {sum(params):,} (+{delta:,})")
    except (GraphError, UnknownModuleError, HyperparameterError) as e:
        _fail(e)
    if output == "-":
        typer.echo(text, nl=False)
        return
    _write_text(out, text)
    placed = f"attention inside layers {inside_rows(cfg)}" if inside else f"inserted rows {list(index_map.inserted)}"
    console.print(f"wrote {out}  ({placed})", soft_wrap=True)
    ultralytics_scale = guess_scale(out.name) or (next(iter(cfg["scales"])) if cfg.get("scales") else "")
    if chosen != ultralytics_scale and not is_yolov5_original(cfg):  # YOLOv5 reads the YAML's multiples, not names
        console.print(
            f"note: Ultralytics takes the scale from the file name, so YOLO({out.name!r}) builds scale "
            f"{ultralytics_scale!r}, not {chosen!r}; name the file like {suggested.name!r} "
            f"or build with attnyolo.build(cfg, scale={chosen!r})."
        )


def _write_text(path: Path, text: str) -> None:
    """Write ``path`` atomically: a crash never leaves half a YAML."""
    from attnyolo.atomic import write_atomically

    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def yolo_command(ctx: typer.Context) -> None:
    """Run the Ultralytics CLI (yolo TASK MODE key=value ...) with attnyolo's modules registered.

    Keys and values are checked first: a typo is one line naming the closest valid keys (exit 2).
    """
    from ultralytics.cfg import entrypoint

    from attnyolo.graph.ultralytics import register
    from attnyolo.yolo_args import check_cli_args

    try:
        check_cli_args(list(ctx.args))
    except AttnYoloError as e:
        _fail(e)
    register()
    with _argv(list(ctx.args)):
        entrypoint()


def register_commands(app: typer.Typer) -> None:
    """Add ``insert`` and ``yolo`` to ``app``."""
    app.command("insert")(insert_command)
    app.command(
        "yolo",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )(yolo_command)
