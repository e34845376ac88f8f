"""The start of every run, fine-tuning or grid alike: load the base, read its architecture once, build the edited
model under the run's seed, transfer the base tensors, check what was left behind.

:func:`load_base` reads a base checkpoint safely (:func:`attnyolo.checkpoints.load_checkpoint`, ``trust=True`` for
a full pickle) or a model YAML (from scratch), with its architecture (:func:`attnyolo.checkpoints.architecture`),
and refuses anything that is not a detector. :func:`build_start` turns that base, an attention edit (or none: the
baseline), the data's classes and a seed into the :class:`Start`: the model a run trains, its YAML, the index map
and the transfer report. :func:`attnyolo.finetune.finetune` and every run of a grid
(:mod:`attnyolo.experiments.runner`) call these two functions; nothing else builds a start model.

The start is a pure function of (base, edit, classes, seed): everything random (the inserted layers' own tensors,
the head's class convolutions of another class count, a whole model from scratch) is drawn under the seed, inside
:func:`seeded`, which restores the process's generators afterwards, so neither the run order nor the process
(driver, worker, Ray task) changes a start tensor, and nothing else in the process is disturbed.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from ultralytics.cfg import DEFAULT_CFG_DICT
from ultralytics.nn.tasks import guess_model_task

from attnyolo.checkpoints import CheckpointError, architecture, check_model_yaml, load_checkpoint
from attnyolo.errors import AttnYoloError
from attnyolo.finetune.errors import FinetuneError
from attnyolo.finetune.key_matching import load_by_keys
from attnyolo.graph import build, insert, load
from attnyolo.graph.layers import METADATA_KEY, layers
from attnyolo.weights import TransferError, TransferReport, transfer
from attnyolo.yolo_args import check_values, unknown_key_message

_REFUSED_ARGS = {
    "model": "the model is the base checkpoint with the attention inserted",
    "pretrained": "the pretrained weights are the base checkpoint's, transferred by attnyolo",
    "resume": "resume an interrupted run with `attnyolo yolo train resume model=RUN/weights/last.pt`",
    "data": "pass the data YAML as data= / --data",
}


def check_yolo_args(yolo_args: Mapping[str, Any]) -> None:
    """Refuse Ultralytics training arguments that attnyolo sets itself, unknown keys and malformed values."""
    for key in yolo_args:
        if key in _REFUSED_ARGS:
            raise FinetuneError(f"yolo argument {key}= cannot be set here: {_REFUSED_ARGS[key]}")
        if key not in DEFAULT_CFG_DICT:
            raise FinetuneError(unknown_key_message(key, DEFAULT_CFG_DICT, "an Ultralytics training argument"))
    try:
        check_values(yolo_args)
    except AttnYoloError as e:
        raise FinetuneError(str(e)) from None


# ------------------------------------------------------------------------------------------------------------ base


@dataclass(frozen=True)
class Base:
    """What a run starts from, loaded once.

    Attributes:
        name: the checkpoint path or the model YAML, for messages and the ``attnyolo`` record.
        cfg: the base architecture (model YAML dict), checked and known to be a detector.
        names: the base's class names when it carries them.
        ckpt: the loaded checkpoint; ``None`` for a model YAML (the run starts from scratch).
    """

    name: str
    cfg: dict
    names: dict | None = None
    ckpt: Mapping[str, Any] | None = None

    @property
    def nc(self) -> int | None:
        nc = self.cfg.get("nc")
        return nc if isinstance(nc, int) and not isinstance(nc, bool) else len(self.names or {}) or None


def check_detector(cfg: Mapping, name: str, user: str = "finetune") -> None:
    """Refuse a base whose head is not a detection head (a classifier, a segmenter...)."""
    task = guess_model_task(dict(cfg))
    if task != "detect":
        raise FinetuneError(f"{name}: a {task} model ({layers(cfg)[-1].module} head); {user} takes detection models")


def load_base(
    weights: str | os.PathLike | None = None, model: Any = None, *, trust: bool = False, user: str = "finetune"
) -> Base:
    """The base of a run: a checkpoint (``weights``, fine-tuning) or a model YAML (``model``, from scratch).

    Args:
        weights: an Ultralytics ``.pt`` or an attnyolo ``.safetensors``.
        model: a model YAML path or dict (when ``weights`` is ``None``).
        trust: full pickle load of ``weights`` (only for files whose origin you trust).
        user: the command named in the not-a-detector message.

    Raises:
        CheckpointError: a checkpoint that cannot be loaded safely, holds no architecture, or whose YAML would run
            code; FinetuneError: a base that is not a detector; GraphError: a bad model YAML.
    """
    if weights is None:
        cfg = load(model)
        name = str(model) if not isinstance(model, Mapping) else "the model YAML"
        check_detector(cfg, name, user)
        return Base(name=name, cfg=dict(cfg))
    path = Path(weights)
    ckpt = load_checkpoint(path, trust=trust)
    arch = architecture(ckpt, path=path)
    if arch.cfg is None:
        raise CheckpointError(
            f"{path}: holds no model architecture (no model with a YAML, no attnyolo safetensors metadata): "
            "finetune needs a checkpoint saved by Ultralytics training or by attnyolo.save_safetensors"
        )
    if not trust:  # parse_model would eval() an activation string and look names up in its module globals
        check_model_yaml(path, arch.cfg)
    check_detector(arch.cfg, str(path), user)
    return Base(name=str(path), cfg=arch.cfg, names=arch.names, ckpt=ckpt)


# ----------------------------------------------------------------------------------------------------------- seed


def seed_all(seed: int) -> None:
    """Seed torch's CPU generator, NumPy's and Python's (use inside :func:`seeded`, which restores them)."""
    torch.default_generator.manual_seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    random.seed(int(seed))


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Draw everything inside from ``seed`` (torch's CPU generator, NumPy's and Python's), then give the process
    back the generator states it had, so what runs after is not disturbed by this block (models are built on the
    CPU; CUDA generators are not touched)."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        seed_all(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


# ---------------------------------------------------------------------------------------------------------- start


@dataclass
class Start:
    """The start of a run: the edited model holding the transferred base weights, before any training.

    Attributes:
        model: the edited Ultralytics model (data's classes and names).
        cfg: its YAML dict (with the ``attnyolo`` record; ``base`` is the checkpoint path).
        index_map: base layer -> edited layer (``None`` for the baseline).
        report: the transfer from the base (``None`` for a baseline from scratch, which is the base itself).
        base_cfg: the base architecture with the data's class count (the latency reference of a grid run).
        class_change: one line naming a class-count change between the base and the data, else ``None``.
    """

    model: nn.Module
    cfg: dict
    index_map: Any
    report: TransferReport | None
    base_cfg: dict
    class_change: str | None = None


Prepared = Start
"""The name :func:`attnyolo.finetune.prepare` has always returned."""


def check_left_behind(report: TransferReport, head: int, nc_base: Any, nc: int) -> None:
    """Annotate the head's class convs (other class count) and refuse anything else left behind."""
    prefix = f"model.{head}."
    explained, other = [], []
    for key, reason in report.skipped:
        if nc_base != nc and key.startswith(prefix) and reason.startswith("shape mismatch"):
            explained.append((key, f"{reason}: the base has {nc_base} classes, the data {nc}"))
        else:
            other.append((key, reason))
    if other:
        listed = "; ".join(f"{k}: {r}" for k, r in other[:5])
        raise TransferError(f"{report.source}: {len(other)} base tensors would be left behind ({listed})")
    report.skipped = explained


def _few_names(names: Mapping | None, n: int = 4) -> str:
    if not names:
        return ""
    shown = [str(v) for _, v in sorted(names.items())[:n]]
    return f" ({', '.join(shown)}{', ...' if len(names) > n else ''})"


def class_change(base: Base, nc: int, names: Mapping | None = None) -> str | None:
    """One line when the data has another class count than a base checkpoint (its head's class convolutions then
    start new), else ``None``."""
    if base.ckpt is None or base.nc is None or base.nc == nc:
        return None
    return (
        f"class count changes: the base {Path(base.name).name} has {base.nc} classes{_few_names(base.names)}, the "
        f"data {nc}{_few_names(names)}; the head's class convolutions start new"
    )


def build_start(
    base: Base,
    attention: str | list | None = None,
    where: Any = "neck",
    *,
    nc: int,
    names: Mapping,
    seed: int = 0,
    after: str | None = None,
    identity_start: bool = True,
    hparams: Mapping[str, Any] | None = None,
    load: str = "transfer",
    build_model: Callable[..., nn.Module] = build,
) -> Start:
    """The model a run starts from.

    - From a checkpoint (``base.ckpt``): the base architecture with ``attention`` inserted (none: the baseline, the
      base architecture itself), built for ``nc`` classes, every base tensor transferred through the index map;
      only the head's class convolutions may be left behind (another class count), anything else is an error.
    - From scratch (a model YAML): the base model is built first; the baseline is that model, a variant gets its
      tensors for every layer it shares with it, so the seed alone decides the shared start.

    Args:
        base: from :func:`load_base`.
        attention: a zoo name or a list (as :func:`attnyolo.insert` takes); ``None``: the baseline.
        where, after, identity_start, hparams: the placement and the attention's options (:func:`attnyolo.insert`).
        nc, names: the data's classes.
        seed: every new tensor is drawn under it (:func:`seeded`).
        load: ``"transfer"`` (attnyolo's transfer through the index map) or ``"keys"``: Ultralytics' key matching,
            as ``yolo train model=EDITED.yaml pretrained=BASE.pt`` loads a community edit (the positive control:
            what it leaves behind is reported, not refused).
        build_model: builds a model YAML dict (``build_model(cfg, nc=nc)``): Ultralytics' by default, a host's
            ``build`` for another host (the YOLOv5 host of a grid: :mod:`attnyolo.experiments.run_hosts`).

    Raises:
        TransferError: a base tensor that would be left behind; GraphError: a bad placement or hyper-parameter.
    """
    nc = int(nc)
    report = None
    with seeded(seed):
        if attention is None:
            cfg, imap = dict(base.cfg), None
        else:
            cfg, imap = insert(
                dict(base.cfg), attention, where, after=after, identity_start=identity_start, **dict(hparams or {})
            )
            record = cfg.get(METADATA_KEY, {})
            cfg[METADATA_KEY] = {
                "base": record.get("base") or base.name,
                **{k: v for k, v in record.items() if k != "base"},
            }
        cfg["nc"] = nc  # the data's class count (the head's class convs are new when the base had another)
        # the engine may have probed modules while inserting (random draws, cached after the first time in a
        # process): seed again, so the start's own tensors never depend on what this process did before
        seed_all(seed)
        scratch = build_model(dict(base.cfg, nc=nc), nc=nc) if base.ckpt is None else None
        model = scratch if scratch is not None and attention is None else build_model(cfg, nc=nc)
        if model is not scratch:
            source = base.ckpt if base.ckpt is not None else scratch
            report = load_by_keys(model, source) if load == "keys" else transfer(model, source, imap)
    if base.ckpt is not None:
        report.source = base.name
        if load != "keys":  # key matching loses the shifted layers' tensors: that loss is what it shows
            check_left_behind(report, len(layers(base.cfg)) - 1, base.nc, nc)
    else:
        report = None  # from scratch: nothing came from a file, nothing to report
    model.names = dict(names)
    return Start(
        model=model,
        cfg=cfg,
        index_map=imap,
        report=report,
        base_cfg=dict(base.cfg, nc=nc),
        class_change=class_change(base, nc, names),
    )
