"""Loading a model YAML (a path, a bare Ultralytics name, or a dict) and writing one back.

A bare name like ``"yolov8n.yaml"``, ``"yolo11s-seg.yaml"`` or ``"yolov5nu.yaml"`` is resolved offline in the
installed Ultralytics ``cfg/models`` folder, the way ``ultralytics.nn.tasks.yaml_model_load`` does it: the
``u`` of YOLOv5u/YOLOv3u names is dropped, ``yolov8n6`` becomes ``yolov8n-p6``, an exact file wins, else the
scale letter is removed (``yolov8n.yaml`` -> ``yolov8.yaml``), and the scale comes from the name with
Ultralytics' own ``guess_model_scale``. The loaded dict is the YAML's content plus ``scale`` when the name
gives one and the YAML has ``scales`` (Ultralytics adds it too); nothing else is added, so ``remove(insert(y)) == y``.

:func:`dump` writes the Ultralytics layout (one flow-style row per line with its index as a comment) and
:func:`load` reads it back to an equal dict.
"""

from __future__ import annotations

import copy
import difflib
import importlib.util
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from ultralytics.nn.tasks import guess_model_scale

from attnyolo.graph.errors import ModelYAMLError, ModelYAMLNotFoundError
from attnyolo.graph.layers import METADATA_KEY, SECTIONS, check_model

Base = str | Path | Mapping[str, Any]


def ultralytics_models_dir() -> Path:
    """The installed Ultralytics ``cfg/models`` folder (located by its package spec)."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        raise ModelYAMLNotFoundError("Ultralytics is not installed: bare model names cannot be resolved")
    return Path(list(spec.submodule_search_locations)[0]) / "cfg" / "models"


@lru_cache(maxsize=1)
def _shipped() -> dict[str, Path]:
    return {p.name: p for p in sorted(ultralytics_models_dir().rglob("*.yaml"))}


def shipped_yamls() -> list[Path]:
    """Every model YAML shipped in the installed Ultralytics, sorted by path."""
    return sorted(_shipped().values())


def guess_scale(name: str | Path) -> str:
    """Scale letter in a model file name (``yolov8s-seg.yaml`` -> ``"s"``), ``""`` if none: Ultralytics' rule."""
    return guess_model_scale(name)  # the rule itself, so both agree


def _candidates(name: str) -> list[str]:
    # Same rewrites as Ultralytics' check_yolov5u_filename and yaml_model_load, in the same order.
    names = [name]
    if ("yolov3" in name or "yolov5" in name) and "u.yaml" in name:
        names.append(name.replace("u.yaml", ".yaml"))
    out = []
    for n in names:
        stem, suffix = Path(n).stem, Path(n).suffix
        if re.fullmatch(r"yolov[58][nsmlx]6", stem):
            n = re.sub(r"(\d+)([nslmx])6(.+)?$", r"\1\2-p6\3", stem) + suffix
        out += [n, re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", n)]
    return list(dict.fromkeys(out))


def resolve_name(name: str) -> Path:
    """Path of a bare Ultralytics model name in the installed ``cfg/models`` folder (offline)."""
    shipped = _shipped()
    for candidate in _candidates(name):
        if candidate in shipped:
            return shipped[candidate]
    close = difflib.get_close_matches(name, list(shipped), n=4, cutoff=0.6)
    hint = f"; close names: {', '.join(close)}" if close else ""
    raise ModelYAMLNotFoundError(
        f"{name!r} is neither a file nor a model YAML shipped with Ultralytics ({ultralytics_models_dir()}){hint}"
    )


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file with a one-line error for a missing file or bad syntax."""
    path = Path(path)
    if not path.is_file():
        raise ModelYAMLNotFoundError(f"{str(path)!r} does not exist")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ModelYAMLError(f"{str(path)!r} is not a YAML file (not UTF-8 text)") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise ModelYAMLError(f"{str(path)!r} is not valid YAML{at}: {getattr(e, 'problem', None) or e}") from None


def load(base: Base, *, scale: str | None = None) -> dict:
    """A validated, private copy of a model dict from a path, a bare Ultralytics name, or a dict.

    Args:
        base: ``"path/to/model.yaml"``, ``"yolov8n.yaml"`` (found in the installed Ultralytics), or a dict.
        scale: overrides the scale the name implies (stored under ``scale``).
    """
    if isinstance(base, Mapping):
        cfg = copy.deepcopy(dict(base))
        source = "model dict"
    elif isinstance(base, (str, Path)):
        path = Path(base)
        if not path.exists() and len(path.parts) == 1:  # a bare name: look in the installed Ultralytics
            path = resolve_name(path.name)
        cfg = read_yaml(path)
        source = repr(str(base))
        if isinstance(cfg, dict) and cfg.get("scales") and (implied := guess_scale(Path(base).name)):
            cfg["scale"] = implied
    else:
        raise ModelYAMLError(f"a model is a path, a bare Ultralytics name or a dict, not {type(base).__name__}")
    check_model(cfg, source)
    if scale is not None:
        cfg["scale"] = scale
    return cfg


def source_name(base: Base) -> str | None:
    """What to record as a model's origin: the name or path given, or the dict's own record."""
    if isinstance(base, Mapping):
        meta = base.get(METADATA_KEY)
        return meta.get("base") if isinstance(meta, Mapping) else None
    return str(base)


def flow(value: Any) -> str:
    """One-line YAML flow text of ``value`` (``[-1, 1, Conv, [64, 3, 2]]``)."""
    return yaml.safe_dump(value, default_flow_style=True, width=2**31, sort_keys=False).strip().removesuffix("\n...")


def _block(key: Any, value: Any, indent: str) -> list[str]:
    # block mappings (scales, the attnyolo record), a list of lists one item per line (anchors), flow leaves
    if isinstance(value, Mapping) and value:
        return [f"{indent}{flow(key)}:"] + [x for k, v in value.items() for x in _block(k, v, indent + "  ")]
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return [f"{indent}{flow(key)}:"] + [f"{indent}  - {flow(v)}" for v in value]
    return [f"{indent}{flow(key)}: {flow(value)}"]


def dump(cfg: Mapping, path: str | Path | None = None) -> str:
    """YAML text of ``cfg`` in Ultralytics' layout (rows one per line, ``# index`` comments); writes ``path``."""
    check_model(cfg)
    lines, start = [], {"backbone": 0, "head": len(cfg["backbone"])}
    meta = cfg.get(METADATA_KEY)
    if isinstance(meta, Mapping) and meta.get("inserted"):
        lines.append(f"# Edited by attnyolo from {meta.get('base') or 'a model dict'}: attention at {meta['inserted']}")
    for key, value in cfg.items():
        if key in SECTIONS:
            lines.append(f"{key}:")
            for i, row in enumerate(value, start[key]):
                lines.append(f"  - {flow(list(row))} # {i}")
        else:
            lines += _block(key, value, "")
    text = "\n".join(lines) + "\n"
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text
