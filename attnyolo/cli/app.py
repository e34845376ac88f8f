"""The ``attnyolo`` command line (Typer). Each command is a thin layer over the Python API.

Bad input never ends in a traceback: :func:`main` turns usage errors and attnyolo's own errors into
one line on stderr and exit code 2 (set ``ATTNYOLO_DEBUG=1`` to see the traceback).
"""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console
from rich.table import Table

import attnyolo
from attnyolo.errors import AttnYoloError, one_line

app = typer.Typer(
    name="attnyolo",
    help="Attention modules for YOLO detectors: zoo, insertion engine, weight transfer, honest experiments.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="The embedded default dataset and data YAML checks.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"attnyolo {attnyolo.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """attnyolo: add attention to YOLO, correctly, in one command."""


@app.command()
def doctor() -> None:
    """Versions, device, offline set-up and folders: what to paste into a bug report."""
    from attnyolo.cli.doctor import report

    table = Table(title="attnyolo doctor", show_header=False)
    for key, value in report().items():
        table.add_row(key, str(value))
    console.print(table)


@data_app.command("default")
def data_default() -> None:
    """Print the path of the embedded dataset's data YAML (unpacking it on first use)."""
    from attnyolo.data import default_dataset

    typer.echo(str(default_dataset()))


@data_app.command("check")
def data_check(data: str = typer.Argument(..., help="An Ultralytics data YAML (PATH or data=PATH).")) -> None:
    """Check a data YAML and every image and label it points to; print counts per split.

    Fails (one line, exit 2) on a missing labels folder, an unreadable image or a bad label row; warns about
    images without a label file (Ultralytics trains on them as background).
    """
    from attnyolo.cli.args import data_path
    from attnyolo.console import make_console
    from attnyolo.data.check import scan_data

    path = data_path(data)
    info, splits = scan_data(path)
    typer.echo(f"{path}: {info['nc']} classes {list(info['names'].values())}; train={info['train']} val={info['val']}")
    table = Table(box=None, header_style="bold")
    for col in ("split", "images", "labels", "instances", "without labels"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for s in splits:
        table.add_row(s.split, str(s.images), str(s.labels), str(s.instances), str(len(s.unlabelled)))
    make_console().print(table)
    for s in splits:
        if s.unlabelled:
            example = ", ".join(p.name for p in s.unlabelled[:3])
            typer.echo(
                f"warning: {s.split}: {len(s.unlabelled)} of {s.images} images have no label file ({example}"
                f"{', ...' if len(s.unlabelled) > 3 else ''}); Ultralytics trains on them as background",
                err=True,
            )


def _register_command_groups() -> None:
    # One file per command group in this package; each adds its commands with register_commands(app).
    from attnyolo.cli import ablate, demo, insert, report, search, viz, weights, yolov5, zoo

    for group in (zoo, insert, weights, ablate, search, report, demo, viz, yolov5):
        group.register_commands(app)


_register_command_groups()


HELP_WIDTH_NOT_A_TERMINAL = 160
"""Width of ``--help`` written to a file or pipe (no terminal width to follow): wide enough that no option name
is cut (rich would otherwise render 80 columns and shorten ``--no-identity-start`` to ``--no-identity-st…``)."""


def _help_width() -> None:
    # In a terminal rich follows its width; COLUMNS / TERMINAL_WIDTH, when set, are the user's choice.
    if sys.stdout.isatty() or os.environ.get("COLUMNS") or os.environ.get("TERMINAL_WIDTH"):
        return
    from typer import rich_utils

    rich_utils.MAX_WIDTH = HELP_WIDTH_NOT_A_TERMINAL


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the app, print bad input as one line, return the exit code."""
    debug = os.environ.get("ATTNYOLO_DEBUG", "") not in {"", "0"}
    _help_width()
    try:
        rv = app(args=argv, prog_name="attnyolo", standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        typer.echo("attnyolo: interrupted", err=True)
        return 130
    except (AttnYoloError, ValueError, KeyError, FileNotFoundError, PermissionError, IsADirectoryError) as e:
        if debug:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        typer.echo(f"attnyolo: error: {one_line(str(msg))}", err=True)
        return 2
    except Exception as e:
        # Usage errors from Typer's (vendored) click: matched by shape, not by import path.
        if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
            raise
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `attnyolo` or bare group: show its help
            typer.echo(e.ctx.get_help() if getattr(e, "ctx", None) else e.format_message())
            return 0
        typer.echo(f"attnyolo: error: {one_line(e.format_message())} (see attnyolo --help)", err=True)
        return 2
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
