"""Argument parsers shared by the command groups: hyper-parameters, placements, Ultralytics key=value pairs."""

from __future__ import annotations

from typing import Any

import yaml

from attnyolo.errors import AttnYoloError
from attnyolo.graph import placement
from attnyolo.graph.errors import GraphError


class CLIArgumentError(AttnYoloError):
    """A command-line argument that cannot be parsed."""


def parse_yolo_args(items: list[str]) -> dict[str, Any]:
    """``["epochs=3", "imgsz=320", "device=cpu"]`` -> ``{"epochs": 3, "imgsz": 320, "device": "cpu"}``, with
    Ultralytics' own value parsing (``smart_value``)."""
    from ultralytics.cfg import smart_value

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or key.startswith("-"):
            raise CLIArgumentError(f"Ultralytics arguments are key=value (epochs=3 imgsz=320), got {item!r}")
        out[key.strip()] = smart_value(value.strip())
    return out


def make_console():
    """A rich Console that gives files and pipes at least 120 columns, so tables are never cut."""
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 120)
    return console


def parse_hparams(items: list[str]) -> dict[str, Any]:
    """``["rd_ratio=0.0625", "act_layer=relu"]`` -> ``{"rd_ratio": 0.0625, "act_layer": "relu"}`` (YAML values)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise GraphError(f"--hparam takes key=value, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def parse_where(where: str | None) -> Any:
    """``"neck"`` stays a name; ``"12,15"`` becomes ``[12, 15]``; anything else is left for the resolver."""
    if where is None or where.lower().replace("-", "_") in placement.NAMED:
        return where
    try:
        return [int(x) for x in where.split(",") if x.strip()]
    except ValueError:
        return where
