"""The grid of an ablation: which variants, which seeds, which start, which recipe, validated before any run.

A grid is data (a dict, the content of ``grid.yaml``)::

    data: path/to/data.yaml           # Ultralytics data YAML
    weights: base.pt                  # fine-tune every variant from this checkpoint (or model: yolov8n.yaml)
    recipe: {epochs: 10, imgsz: 320}  # Ultralytics training arguments shared by every run
    seeds: 3                          # or [0, 1, 2]
    attention: [se, cbam]             # names x placements x hyper-parameters ...
    where: [neck]
    hparams: {}
    variants:                         # ... and/or explicit variants
      - {attention: se, where: backbone, hparams: {rd_ratio: 0.25}}
      - {attention: cbam, where: backbone, load: keys}   # positive control: Ultralytics' key matching
    freeze_epochs: 0                  # with weights: train only the new tensors for N epochs first (as finetune)
    attention_recipe: default         # with weights: the attention recipe (attnyolo.finetune.recipe.Recipe):
                                      # default (the same as not naming it in a new grid), none, or a mapping
                                      # {warmup_epochs: 1, new_lr_scale: 100, gamma_lr_scale: 300}
    host: ultralytics                 # or yolov5: the original YOLOv5 v7.0 (its YAMLs/checkpoints, its train.py)
    yolov5: path/to/clone             # host yolov5 only: a v7.0 clone (default $ATTNYOLO_YOLOV5, else the package)

A new grid with ``weights:`` that does not name ``attention_recipe`` gets the default
(:func:`attnyolo.finetune.recipe.default_recipe`: a 1-epoch attention warm-up when ``recipe.epochs >= 2``, new
tensors at lr0 x 100, gamma at lr0 x 300), written out into ``grid.yaml``; ``attention_recipe: none`` opts out. A
folder whose stored grid has no ``attention_recipe`` (written before the default, or with ``none``) resumes
without one: the schedule its runs were run with. From-scratch grids (``model:``) have no recipe.

``host`` (:mod:`attnyolo.experiments.run_hosts`): which codebase builds, trains and validates every run; with
``yolov5`` the recipe is YOLOv5 ``train.py`` options (``batch_size``, ``imgsz``...) and ``freeze_epochs`` and
``attention_recipe`` are refused (Ultralytics-trainer callbacks).

``load`` (per explicit variant): how the variant gets the base's weights: ``transfer`` (default: attnyolo's
transfer through the insertion's index map) or ``keys`` (Ultralytics' key matching, as ``yolo train
model=EDITED.yaml pretrained=BASE.pt`` loads a community edit: :func:`attnyolo.finetune.key_matching.load_by_keys`).

:func:`resolve` turns it into a :class:`Grid` (the baseline first, then the variants in order, duplicates
dropped) and checks everything that can be checked without training: attention names (closest names
suggested), placements and hyper-parameters (by inserting into the base architecture), seeds, the data YAML, the
start model or checkpoint, and every recipe key against Ultralytics' configuration keys.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnyolo.errors import AttnYoloError
from attnyolo.experiments.run_hosts import DEFAULT_HOST, HOSTS, grid_host
from attnyolo.finetune import check_freeze_epochs
from attnyolo.finetune.recipe import (
    RECIPE_DEFAULT,
    RECIPE_FIELDS,
    RECIPE_MODES,
    RECIPE_NONE,
    Recipe,
    default_recipe,
)

BASELINE = "baseline"
SCHEMA_KEYS = {
    "data",
    "model",
    "weights",
    "recipe",
    "seeds",
    "attention",
    "where",
    "hparams",
    "variants",
    "identity_start",
    "trust",
    "weights_sha256",
    "freeze_epochs",
    "attention_recipe",
    "host",
    "yolov5",
}
# The runner sets these itself: the seed comes from the grid's seeds, the run folder from the grid folder.
RUNNER_ARGS = {
    "seed": "give seeds with --seeds (a count or a list); each run gets its own",
    "project": "the runs go into GRID_DIR/runs",
    "name": "each run is named <variant>-s<seed>",
    "exist_ok": "set by the runner",
}


LOAD_MODES = ("transfer", "keys")
"""A variant's ``load``: attnyolo's transfer (default) or Ultralytics' key matching (the positive control)."""
DEFAULT_LOAD = "transfer"


class GridError(AttnYoloError):
    """A grid that cannot run: empty, bad seeds, unknown keys, a missing file."""


@dataclass(frozen=True)
class Variant:
    """One point of the grid: an attention at a placement with hyper-parameters (all ``None``/empty: baseline)."""

    attention: str | None = None
    where: Any = None
    hparams: dict = field(default_factory=dict)
    load: str = DEFAULT_LOAD

    @property
    def is_baseline(self) -> bool:
        return self.attention is None

    @property
    def label(self) -> str:
        """``baseline`` or ``<attention>@<placement>[+key=value...]``, safe as a folder name."""
        if self.is_baseline:
            return BASELINE
        parts = [f"{self.attention}@{placement_label(self.where)}"]
        parts += [f"+{k}={_scalar(v)}" for k, v in sorted(self.hparams.items())]
        if self.load != DEFAULT_LOAD:
            parts.append(f"+load={self.load}")
        return _safe("".join(parts))

    def as_dict(self) -> dict:
        out = {"attention": self.attention, "where": self.where, "hparams": dict(self.hparams)}
        if self.load != DEFAULT_LOAD:  # only when set: grids written before `load` existed resume unchanged
            out["load"] = self.load
        return out


@dataclass(frozen=True)
class Grid:
    """A resolved grid. ``config()`` is its canonical dict (what ``grid.yaml`` holds and what resume compares)."""

    data: str
    model: str | None
    weights: str | None
    weights_sha256: str | None
    recipe: dict
    seeds: tuple[int, ...]
    variants: tuple[Variant, ...]
    identity_start: bool = True
    trust: bool = False
    freeze_epochs: int = 0
    attention_recipe: dict = field(default_factory=dict)
    host: str = DEFAULT_HOST
    yolov5: str | None = None

    def config(self) -> dict:
        # freeze_epochs and attention_recipe only when set, so a grid written before they existed resumes with the
        # same config
        freeze = {"freeze_epochs": self.freeze_epochs} if self.freeze_epochs else {}
        if self.attention_recipe:
            freeze["attention_recipe"] = dict(self.attention_recipe)
        if self.host != DEFAULT_HOST:  # only when set: an Ultralytics grid keeps the config it always had
            freeze["host"] = self.host
        if self.yolov5 is not None:
            freeze["yolov5"] = self.yolov5
        return {
            "data": self.data,
            "model": self.model,
            "weights": self.weights,
            "weights_sha256": self.weights_sha256,
            "recipe": dict(self.recipe),
            "seeds": list(self.seeds),
            "variants": [v.as_dict() for v in self.variants],
            "identity_start": self.identity_start,
            "trust": self.trust,
            **freeze,
        }

    def runs(self) -> list[tuple[str, Variant, int]]:
        """``(run_id, variant, seed)`` for every run, seed-major so each seed's baseline comes first."""
        return [(run_id(v, s), v, s) for s in self.seeds for v in self.variants]


def run_id(variant: Variant, seed: int) -> str:
    return f"{variant.label}-s{seed}"


def placement_label(where: Any) -> str:
    if where is None:
        return "neck"
    if isinstance(where, Mapping):  # {"after": "C2f"} or {"where": "backbone", "after": "C2f"}
        region = where.get("where")
        return (f"{placement_label(region)}-" if region else "") + f"after_{where.get('after')}"
    if isinstance(where, (list, tuple)):
        return "L" + "_".join(str(int(i)) for i in where)
    return str(where)


def _scalar(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9@+=._,-]", "_", text)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------------- validation


def _seeds(value: Any) -> tuple[int, ...]:
    if isinstance(value, bool) or value is None:
        raise GridError(f"seeds must be a count >= 1 or a list of integers >= 0, got {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise GridError(f"seeds must be a count >= 1 (--seeds 3 runs seeds 0, 1, 2), got {value}")
        return tuple(range(value))
    if isinstance(value, str):
        try:
            return _seeds([int(s) for s in value.split(",") if s.strip()] if "," in value else int(value))
        except ValueError:
            raise GridError(f"seeds must be a count (3) or a list (0,1,2), got {value!r}") from None
    if isinstance(value, Iterable):
        seeds = list(value)
        if not seeds:
            raise GridError("seeds is an empty list: give a count >= 1 or at least one seed")
        bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
        if bad:
            raise GridError(f"seeds must be integers >= 0, got {bad[0]!r}")
        if len(set(seeds)) != len(seeds):
            raise GridError(f"seeds are repeated: {seeds}")
        return tuple(seeds)
    raise GridError(f"seeds must be a count or a list, got {value!r}")


def _listed(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [s.strip() for s in value.split(",") if s.strip()]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _where_items(value: Any) -> list:
    """``"neck"`` -> ``["neck"]``; ``["neck", [12, 15]]`` stays; ``[12, 15]`` (ints only) is one placement."""
    if value is None:
        return ["neck"]
    if isinstance(value, (list, tuple)) and value and all(isinstance(i, int) for i in value):
        return [list(value)]
    return [list(w) if isinstance(w, tuple) else w for w in (value if isinstance(value, (list, tuple)) else [value])]


def _load_mode(value: Any) -> str:
    if not isinstance(value, str) or value not in LOAD_MODES:
        raise GridError(
            f"variant load must be one of {', '.join(LOAD_MODES)} (keys: Ultralytics' key matching, the positive "
            f"control), got {value!r}"
        )
    return value


def _variants(config: Mapping) -> tuple[Variant, ...]:
    out = [Variant()]
    hparams = config.get("hparams") or {}
    if not isinstance(hparams, Mapping):
        raise GridError(f"hparams must be a mapping key: value, got {hparams!r}")
    for name in _listed(config.get("attention")):
        for where in _where_items(config.get("where")):
            out.append(Variant(str(name).lower(), where, dict(hparams)))
    for item in config.get("variants") or []:
        if isinstance(item, Mapping) and item.get("attention") is None and not item.get("hparams"):
            continue  # the baseline (a resolved grid lists it): always included anyway
        if not isinstance(item, Mapping) or not item.get("attention"):
            raise GridError(f"each entry of variants needs an attention name, got {item!r}")
        unknown = set(item) - {"attention", "where", "hparams", "load"}
        if unknown:
            raise GridError(
                f"variant {item!r}: unknown keys {sorted(unknown)} (allowed: attention, where, hparams, load)"
            )
        out.append(
            Variant(
                str(item["attention"]).lower(),
                item.get("where") or "neck",
                dict(item.get("hparams") or {}),
                _load_mode(item.get("load", DEFAULT_LOAD)),
            )
        )
    unique: dict[str, Variant] = {}
    for v in out:
        unique.setdefault(v.label, v)
    if len(unique) == 1:
        raise GridError(
            "the grid is empty: give at least one attention (--attention se,cbam or attention: in the YAML)"
        )
    return tuple(unique.values())


def _check_recipe(recipe: Mapping[str, Any], host: Any) -> None:
    for key, why in RUNNER_ARGS.items():
        if key in recipe:
            raise GridError(f"recipe argument {key}= cannot be set in a grid: {why}")
    host.check_recipe(recipe)


def _host(config: Mapping[str, Any]) -> tuple[str, str | None]:
    """The grid's ``host`` and ``yolov5`` clone folder, checked."""
    host, clone = config.get("host", DEFAULT_HOST), config.get("yolov5")
    if host not in HOSTS:
        raise GridError(f"host must be one of {', '.join(HOSTS)}, got {host!r}")
    if clone is not None and host != "yolov5":
        raise GridError(f"yolov5: {clone!r} names a YOLOv5 clone, which only host: yolov5 uses (--host yolov5)")
    if host == "yolov5":
        for key in ("freeze_epochs", "attention_recipe"):
            if config.get(key):
                raise GridError(
                    f"{key} is applied by the Ultralytics trainer's callbacks; host yolov5 does not support it: leave "
                    f"{key} out, or use host ultralytics"
                )
    return host, None if clone is None else str(Path(os.path.expanduser(str(clone))).resolve())


def where_arg(where: Any) -> tuple[Any, str | None]:
    """A variant's placement as :func:`attnyolo.insert`'s ``(where, after)``."""
    if isinstance(where, Mapping):
        return where.get("where"), where.get("after")
    return where, None


def check_variant(base_cfg: Mapping, variant: Variant, identity_start: bool = True) -> tuple[dict, Any]:
    """Insert ``variant`` into ``base_cfg``: ``(cfg, index_map)``; raises the engine's one-line errors."""
    from attnyolo.graph import insert

    where, after = where_arg(variant.where)
    return insert(
        dict(base_cfg), variant.attention, where, after=after, identity_start=identity_start, **variant.hparams
    )


def resolve(config: Mapping[str, Any], *, check: bool = True) -> Grid:
    """Validate a grid dict (``grid.yaml``'s content, or the CLI flags as a dict) into a :class:`Grid`.

    Args:
        config: keys ``data``, ``model`` or ``weights``, ``recipe``, ``seeds``, ``attention``, ``where``,
            ``hparams``, ``variants``, ``identity_start``, ``trust`` (see the module docstring).
        check: also insert every variant into the base architecture and check the data YAML (the default).

    Raises:
        GridError, DataError, GraphError, UnknownModuleError, CheckpointError, FinetuneError: a one-line reason.
    """
    if not isinstance(config, Mapping):
        raise GridError(f"a grid is a mapping (data, model/weights, recipe, seeds, attention...), got {config!r}")
    unknown = set(config) - SCHEMA_KEYS
    if unknown:
        import difflib

        hints = [
            f"{k} (did you mean {difflib.get_close_matches(k, SCHEMA_KEYS, 1, 0.5)[0]}?)"
            if difflib.get_close_matches(k, SCHEMA_KEYS, 1, 0.5)
            else k
            for k in sorted(unknown)
        ]
        raise GridError(f"unknown grid keys: {', '.join(hints)}; allowed: {', '.join(sorted(SCHEMA_KEYS))}")
    data = config.get("data")
    if not data:
        raise GridError("the grid needs data: an Ultralytics data YAML (`attnyolo data default` is the embedded one)")
    data_path = Path(os.path.expanduser(str(data)))
    if not data_path.is_file():
        raise GridError(f"data YAML {str(data_path)!r} does not exist")
    model, weights = config.get("model"), config.get("weights")
    if (model is None) == (weights is None):
        raise GridError("give exactly one start: model: a model YAML (from scratch) or weights: a base checkpoint")
    sha = None
    if weights is not None:
        wpath = Path(os.path.expanduser(str(weights))).resolve()
        if not wpath.is_file():
            raise GridError(f"base checkpoint {str(wpath)!r} does not exist")
        weights, sha = str(wpath), _sha256(wpath)
        if config.get("weights_sha256") not in (None, sha):
            raise GridError(f"base checkpoint {weights} changed since the grid was written (sha256 differs)")
    elif Path(str(model)).is_file():
        model = str(Path(str(model)).resolve())
    recipe = dict(config.get("recipe") or {})
    if not isinstance(config.get("recipe") or {}, Mapping):
        raise GridError(f"recipe must be a mapping of Ultralytics training arguments, got {config.get('recipe')!r}")
    host, clone = _host(config)
    _check_recipe(recipe, grid_host(host, clone))
    identity_start, trust = config.get("identity_start", True), config.get("trust", False)
    if not isinstance(identity_start, bool) or not isinstance(trust, bool):
        raise GridError("identity_start and trust must be true or false")
    grid = Grid(
        data=str(data_path.resolve()),
        model=None if model is None else str(model),
        weights=weights,
        weights_sha256=sha,
        recipe=recipe,
        seeds=_seeds(config.get("seeds", 1)),
        variants=_variants(config),
        identity_start=identity_start,
        trust=trust,
        freeze_epochs=_freeze_epochs(config.get("freeze_epochs", 0), weights),
        attention_recipe=_attention_recipe(
            config.get("attention_recipe"), weights, recipe, _freeze_epochs(config.get("freeze_epochs", 0), weights)
        ),
        host=host,
        yolov5=clone,
    )
    if check:
        from attnyolo.data.check import check_data

        check_data(grid.data)
        base = grid_host(grid.host, grid.yolov5).load_base(grid.weights, grid.model, trust=grid.trust).cfg
        for v in grid.variants[1:]:
            check_variant(base, v, grid.identity_start)
    return grid


def _freeze_epochs(value: Any, weights: str | None) -> int:
    try:
        epochs = check_freeze_epochs(value)
    except AttnYoloError as e:
        raise GridError(str(e)) from None
    if epochs and weights is None:
        raise GridError("freeze_epochs needs weights: (a base checkpoint whose transferred tensors it freezes)")
    return epochs


def _attention_recipe(value: Any, weights: str | None, recipe: Mapping[str, Any], freeze_epochs: int = 0) -> dict:
    """The grid's ``attention_recipe`` (the keyword arguments of :class:`attnyolo.finetune.recipe.Recipe`), checked
    now: unknown keys, bad factors, a warm-up longer than the recipe's epochs or next to ``freeze_epochs``.

    ``"none"`` (or nothing) is no recipe; ``"default"`` is :func:`attnyolo.finetune.recipe.default_recipe` for the
    recipe's epochs, written out as its options (what ``grid.yaml`` stores, so a later default cannot change it).
    A grid that does not name it gets the default from :func:`attnyolo.experiments.ablate` when it is new, and its
    stored value (none for grids written before the default) when it resumes a folder."""
    if not value or (isinstance(value, str) and value.strip().lower() == RECIPE_NONE):
        return {}
    if isinstance(value, str) and value.strip().lower() == RECIPE_DEFAULT:
        if weights is None:
            return {}  # from scratch (model:): nothing is new to a base, no recipe
        value = default_recipe(recipe.get("epochs"), freeze_epochs).as_dict()
    if not isinstance(value, Mapping):
        raise GridError(
            f"attention_recipe must be {' or '.join(RECIPE_MODES)} or a mapping such as "
            f"{{warmup_epochs: 1, new_lr_scale: 100}}, got {value!r}"
        )
    unknown = set(value) - set(RECIPE_FIELDS)
    if unknown:
        raise GridError(f"attention_recipe: unknown keys {sorted(unknown)} (allowed: {', '.join(RECIPE_FIELDS)})")
    if weights is None:
        raise GridError("attention_recipe needs weights: (a base checkpoint: its warm-up trains what is new to it)")
    try:
        Recipe(**value).check(recipe.get("epochs", 100), freeze_epochs)
    except AttnYoloError as e:
        raise GridError(f"attention_recipe: {e}") from None
    return dict(value)


def attention_recipe(grid: Grid) -> Recipe | None:
    """The grid's :class:`~attnyolo.finetune.recipe.Recipe`, or ``None`` when it sets none."""
    return Recipe(**grid.attention_recipe) if grid.attention_recipe else None


def differences(stored: Mapping, given: Mapping, prefix: str = "") -> list[str]:
    """Human-readable differences between two grid configs (``recipe.epochs: 10 -> 20``)."""
    out = []
    for key in sorted(set(stored) | set(given)):
        a, b = stored.get(key), given.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            if key == "variants":
                la = [Variant(**v).label for v in a or []]
                lb = [Variant(**v).label for v in b or []]
                a, b = la, lb
            out.append(f"{prefix}{key}: stored {a!r}, given {b!r}")
    return out
