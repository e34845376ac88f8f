"""Argument parsers shared by the command groups: hyper-parameters, placements, Ultralytics key=value pairs."""

from __future__ import annotations

from pathlib import Path
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


DATA_HELP = "Data YAML, as --data PATH or data=PATH (`attnyolo data default`: the embedded one)."


def data_path(text: str) -> Path:
    """``"data=x.yaml"`` or ``"x.yaml"`` -> ``Path("x.yaml")``: Ultralytics' spelling is accepted wherever a data
    YAML is an argument."""
    return Path(text[len("data=") :] if text.startswith("data=") else text)


def take_data(option: Path | None, extra: list[str], *, required: bool = True) -> tuple[Path | None, list[str]]:
    """The data YAML of a command that takes ``--data PATH`` and Ultralytics-style ``data=PATH`` among its extra
    ``key=value`` arguments; returns it and the extra arguments without it.

    Raises:
        CLIArgumentError: the data YAML given twice (differently), or missing when ``required``.
    """
    if any(a.strip() == "data=" for a in extra):
        raise CLIArgumentError("data= needs a path: data=PATH (`attnyolo data default`: the embedded one)")
    given = [data_path(a) for a in extra if a.startswith("data=")]
    rest = [a for a in extra if not a.startswith("data=")]
    choices = {str(p) for p in given} | ({str(option)} if option is not None else set())
    if len(choices) > 1:
        raise CLIArgumentError(f"the data YAML is given twice ({', '.join(sorted(choices))}); give it once")
    chosen = option if option is not None else (given[0] if given else None)
    if chosen is None and required:
        raise CLIArgumentError("a data YAML is needed: data=PATH or --data PATH (`attnyolo data default` prints the "
                               "embedded one)")  # fmt: skip
    return chosen, rest


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


RECIPE_HELP = {
    "attention_recipe": "With --weights: default (attention warm-up 1 epoch when epochs >= 2, new tensors at "
    "lr0 x 100, gamma x 300) or none.",
    "attention_warmup": "Epochs that train only the new tensors first (default: 1 if epochs >= 2).",
    "new_lr_scale": "lr0 factor of the new tensors (100).",
    "gamma_lr_scale": "lr0 factor of gamma (300).",
}
"""Help of the attention-recipe flags shared by ``ablate`` and ``search``."""


def attention_recipe_option(
    mode: str | None, epochs: Any, warmup: int | None, new_lr_scale: float | None, gamma_lr_scale: float | None
) -> str | dict | None:
    """The grid's ``attention_recipe`` from the CLI flags: ``None`` (not given: the grid's own, or the default),
    ``mode`` as given, or the default (or ``mode``) with the knobs given replaced, written out as a mapping."""
    knobs = {"warmup_epochs": warmup, "new_lr_scale": new_lr_scale, "gamma_lr_scale": gamma_lr_scale}
    if all(v is None for v in knobs.values()):
        return mode
    from attnyolo.finetune.recipe import recipe_with  # torch: imported only when a knob is given

    chosen = recipe_with(mode or "default", epochs, **knobs)
    return chosen.as_dict() if chosen is not None else "none"
