"""attnyolo's trainer callbacks, the same for :func:`attnyolo.finetune.finetune` and every grid run.

:func:`add_run_callbacks` registers all of them on an Ultralytics ``YOLO`` object built from a run's start
checkpoint (usable alone too):

- :class:`GammaLogger` (:func:`add_gamma_logging`): every identity-start ``gamma`` (see
  :mod:`attnyolo.graph.ultralytics`) at the start (epoch 0) and after each epoch, in
  ``<run_dir>/attnyolo_gamma.csv`` (columns :data:`GAMMA_COLUMNS`; ``gamma_ema`` is the EMA model's value, the one
  ``best.pt`` holds). The file is rewritten atomically at each epoch end.
- :class:`GammaOptimiser` (:func:`add_gamma_optimiser`): the gammas in an optimiser group of their own.
- :class:`FreezeTransferred` (``freeze_epochs=N``): for the first N epochs the transferred (base) parameters get
  no gradient and the base's BatchNorm layers keep their running statistics; from epoch N on they train again
  (the optimiser holds them from the start, so nothing is rebuilt). Only the inserted layers, their ``gamma``
  and any head tensors the base could not provide train during the frozen epochs.
- the start check (:func:`start_checker`): at ``on_pretrain_routine_end`` every tensor of the model Ultralytics is
  about to train must equal the start model's (it raises otherwise), so nothing is re-initialised or dropped
  silently.
- the start checkpoint (the transferred model, before any training) kept as ``<run_dir>/weights/start.pt`` and
  recorded as ``model`` in the run's ``args.yaml``, so ``attnyolo yolo train cfg=<run_dir>/args.yaml`` reruns it
  (:func:`keep_start`).
- the transfer report written to ``<run_dir>/attnyolo_transfer.txt`` (:func:`report_writer`).

A resumed run (``YOLO(last.pt).train(resume=True)``) gets the gamma log, the gamma group and the freezing again
(the optimiser state it saved fits the same groups); the start check, ``start.pt`` and the report belong to its
first start.
"""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn
from ultralytics.utils import RANK, YAML

from attnyolo.atomic import write_atomically
from attnyolo.finetune.errors import FinetuneError
from attnyolo.graph.adapter import AttentionLayer
from attnyolo.graph.attention_layers import attention_layers
from attnyolo.models import unwrap
from attnyolo.weights import TransferError, TransferReport

GAMMA_CSV = "attnyolo_gamma.csv"
"""File name of the gamma log inside a run folder."""
GAMMA_COLUMNS = ("epoch", "layer", "attention", "gamma", "gamma_ema")
TRANSFER_TXT = "attnyolo_transfer.txt"
"""File name of the transfer report written into a fine-tuning run folder."""


# ---------------------------------------------------------------------------------------------------- gamma logging


def gamma_values(model: Any) -> list[tuple[int | str, str, float]]:
    """``(layer, attention name, gamma)`` of every attention layer that has an identity-start gamma, labelled as
    :func:`~attnyolo.graph.attention_layers.attention_layers` labels them (``16``, ``15.m.0.attn``): the same labels
    as viz, engagement and the report."""
    return [
        (int(label) if label.isdigit() else label, m.attention, float(m.gamma.detach().float().cpu()))
        for label, m in attention_layers(model).items()
        if getattr(m, "gamma", None) is not None
    ]


def _row_order(key: tuple[int, int | str]) -> tuple[int, int, str]:
    # CSV rows by epoch, then layer index, inside-block attentions ("15.m.0.attn") after their layer's number
    epoch, layer = key
    return epoch, int(str(layer).split(".")[0]), str(layer)


def _is_main_process() -> bool:
    return RANK in {-1, 0}


def _write_csv(path: Path, rows: list[tuple]) -> None:
    """Rewrite ``path`` atomically: a reader never sees half a file."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(GAMMA_COLUMNS)
            writer.writerows(rows)

    write_atomically(path, write)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.8g}"


class GammaLogger:
    """Trainer callbacks that log every inserted layer's gamma to ``<run_dir>/attnyolo_gamma.csv``.

    ``on_train_start`` records the values the run starts from as epoch ``start_epoch`` (0 for a new run; a
    resumed run keeps the rows of the epochs it already has), ``on_train_epoch_end`` those after each epoch
    (``epoch`` counts finished epochs, as Ultralytics' ``results.csv``). Rows are ``epoch, layer, attention,
    gamma, gamma_ema``. Nothing is written for a model without gamma.
    """

    def __init__(self) -> None:
        self.rows: dict[tuple[int, int | str], tuple] = {}
        self.path: Path | None = None

    def _record(self, trainer: Any, epoch: int) -> None:
        ema = getattr(getattr(trainer, "ema", None), "ema", None)
        ema_values = {i: g for i, _, g in gamma_values(ema)} if ema is not None else {}
        values = gamma_values(trainer.model)
        if not values or not _is_main_process():
            return
        for i, name, g in values:
            self.rows[(epoch, i)] = (epoch, i, name, _fmt(g), _fmt(ema_values.get(i)))
        self.path = Path(trainer.save_dir) / GAMMA_CSV
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _write_csv(self.path, [self.rows[k] for k in sorted(self.rows, key=_row_order)])

    def on_train_start(self, trainer: Any) -> None:
        start = int(getattr(trainer, "start_epoch", 0) or 0)
        existing = Path(trainer.save_dir) / GAMMA_CSV
        if start and existing.is_file() and not self.rows:  # a resumed run: keep the epochs already logged
            with open(existing, newline="") as f:
                for row in csv.DictReader(f):
                    epoch, layer = int(row["epoch"]), row["layer"]
                    layer = int(layer) if layer.isdigit() else layer
                    if epoch < start:
                        self.rows[(epoch, layer)] = tuple(row[c] for c in GAMMA_COLUMNS)
        self._record(trainer, start)

    def on_train_epoch_end(self, trainer: Any) -> None:
        self._record(trainer, int(trainer.epoch) + 1)


def add_gamma_logging(model: Any) -> GammaLogger:
    """Register a :class:`GammaLogger` on an Ultralytics ``YOLO`` object (``model.train()`` then logs gamma)."""
    logger = GammaLogger()
    model.add_callback("on_train_start", logger.on_train_start)
    model.add_callback("on_train_epoch_end", logger.on_train_epoch_end)
    return logger


# --------------------------------------------------------------------------------------------------------- freezing


class FreezeTransferred:
    """Trainer callbacks that freeze the tensors listed in ``keys`` for the first ``epochs`` epochs.

    During a frozen epoch those parameters have ``requires_grad=False`` (no gradient, so no optimiser update and
    no weight decay) and every BatchNorm layer whose weights are among them stays in eval mode (its running
    statistics do not move). From epoch ``epochs`` on, each parameter gets back the ``requires_grad`` it had
    (Ultralytics keeps its DFL conv frozen), and the BatchNorm layers train again.

    Args:
        keys: state-dict keys of the model (``model.3.conv.weight``...), e.g. the targets of a transfer.
        epochs: number of frozen epochs (0: nothing is frozen).
    """

    def __init__(self, keys: set[str] | list[str], epochs: int) -> None:
        self.keys = set(keys)
        self.epochs = int(epochs)
        self.frozen = False
        self._params: list[tuple[nn.Parameter, bool]] | None = None
        self._norms: list[nn.Module] = []

    def _collect(self, trainer: Any) -> None:
        net = unwrap(trainer.model)
        self._params = [(p, p.requires_grad) for k, p in net.named_parameters() if k in self.keys]
        self._norms = [
            m
            for k, m in net.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and f"{k}.running_mean" in self.keys
        ]

    def on_train_epoch_start(self, trainer: Any) -> None:
        if self._params is None:
            self._collect(trainer)
        self.frozen = int(trainer.epoch) < self.epochs
        for p, requires_grad in self._params:
            p.requires_grad_(requires_grad and not self.frozen)

    def on_train_batch_start(self, trainer: Any) -> None:
        # the trainer sets model.train() at each epoch start, after on_train_epoch_start
        if self.frozen:
            for m in self._norms:
                m.eval()


# ------------------------------------------------------------------------------------------ gamma's optimiser group

GAMMA_WEIGHT_DECAY = 0.0
"""Default weight decay of the identity-start gammas (measured choice; see :class:`GammaOptimiser`)."""
GAMMA_LR_SCALE = 10.0
"""Default learning-rate multiplier of the gammas' own optimiser group (measured choice)."""


class GammaOptimiser:
    """Trainer callback that gives every identity-start ``gamma`` its own optimiser group.

    Ultralytics' ``build_optimizer`` puts a 0-d ``gamma`` among the decayed weights, so weight decay pulls it back
    to 0 (the identity) at every step. This callback wraps the trainer's ``build_optimizer`` (at
    ``on_pretrain_routine_start``, before the optimiser and its scheduler exist, so a resumed run rebuilds the same
    groups and its saved optimiser state fits) and moves the gammas into a group ``gamma`` with ``weight_decay``
    and ``lr = lr0 * lr_scale``, following the same schedule and warm-up as every other group.

    The defaults, measured on the embedded data (``scripts/measure_finetune.py``; numbers in the README, "gamma:
    weight decay and its own learning rate"): CBAM in the neck, AdamW lr0 5e-4, 2 epochs. Weight decay on gamma
    made no measurable difference (max |gamma| 0.0032 with decay, 0.0009 without: both at the level of run-to-run
    noise; decoupled decay at lr x wd = 2.5e-7 per step cannot matter in a short run), so gamma gets none, as a
    gate should. A learning rate 10x the base's moved gamma 4-10x further (max |gamma| 0.012-0.014) with the same
    mAP50-95 (0.145 vs 0.144): in a short fine-tune the base's small learning rate, not decay, is what keeps gamma
    near 0, so gamma's group uses ``lr0 * 10`` (the transferred weights keep the small learning rate that protects
    them).
    """

    def __init__(self, weight_decay: float = GAMMA_WEIGHT_DECAY, lr_scale: float = GAMMA_LR_SCALE) -> None:
        if weight_decay < 0 or lr_scale <= 0:
            raise FinetuneError(f"gamma weight_decay must be >= 0 and lr_scale > 0, got {weight_decay}, {lr_scale}")
        self.weight_decay, self.lr_scale = float(weight_decay), float(lr_scale)

    def on_pretrain_routine_start(self, trainer: Any) -> None:
        original = trainer.build_optimizer

        def build_optimizer(*args: Any, **kwargs: Any) -> torch.optim.Optimizer:
            optimizer = original(*args, **kwargs)
            self.regroup(optimizer, trainer.model)
            return optimizer

        trainer.build_optimizer = build_optimizer

    def regroup(self, optimizer: torch.optim.Optimizer, model: Any) -> None:
        """Move the model's gammas out of their groups into one group of their own."""
        gammas = [m.gamma for m in unwrap(model).modules() if isinstance(m, AttentionLayer) and m.gamma is not None]
        template = take_from_groups(optimizer, gammas)
        if template is None:
            return
        settings = {k: v for k, v in template.items() if k not in ("params", "use_muon")}
        settings |= {"weight_decay": self.weight_decay, "lr": template["lr"] * self.lr_scale, "param_group": "gamma"}
        optimizer.add_param_group({"params": gammas, **settings})


def take_from_groups(optimizer: torch.optim.Optimizer, params: list) -> dict | None:
    """Remove ``params`` from the optimiser's groups (before the first step: no state to move) and return the first
    group that held any of them, whose settings a new group of their own starts from; ``None`` if none did."""
    ids = {id(p) for p in params}
    template = None
    for group in optimizer.param_groups:
        kept = [p for p in group["params"] if id(p) not in ids]
        if len(kept) != len(group["params"]):
            template = template or group
            group["params"] = kept
    return template


def add_gamma_optimiser(
    model: Any, weight_decay: float = GAMMA_WEIGHT_DECAY, lr_scale: float = GAMMA_LR_SCALE
) -> GammaOptimiser:
    """Register a :class:`GammaOptimiser` on an Ultralytics ``YOLO`` object (before ``model.train()``)."""
    hook = GammaOptimiser(weight_decay, lr_scale)
    model.add_callback("on_pretrain_routine_start", hook.on_pretrain_routine_start)
    return hook


# ---------------------------------------------------------------------------------------------- start of the run


def start_checker(expected: dict[str, torch.Tensor]) -> Callable[[Any], None]:
    """A callback that raises when the trainer's model differs from ``expected`` (the start model's tensors)."""

    def check(trainer: Any) -> None:
        state = unwrap(trainer.model).state_dict()
        missing = sorted(set(expected) - set(state))
        changed = [k for k in expected if k in state and not torch.equal(state[k].detach().cpu(), expected[k])]
        if missing or changed:
            raise TransferError(
                f"Ultralytics' trainer did not start from the transferred weights: {len(missing)} tensors missing "
                f"({', '.join(missing[:3])}), {len(changed)} changed ({', '.join(changed[:3])})"
            )

    return check


START_PT = "start.pt"
"""File name, inside the run's ``weights`` folder, of the transferred model the run starts from."""


def keep_start(start: Path) -> Callable[[Any], None]:
    """Copy the start checkpoint into the run's ``weights`` folder and record it as ``model`` in ``args.yaml``.

    Ultralytics writes ``args.yaml`` before any callback runs, with ``model`` = the temporary start file; this
    rewrites it once the copy is in place, so ``attnyolo yolo train cfg=RUN/args.yaml`` reruns the same fine-tuning.
    """

    def keep(trainer: Any) -> None:
        if not _is_main_process():
            return
        wdir = Path(trainer.wdir)
        wdir.mkdir(parents=True, exist_ok=True)
        kept = wdir / START_PT
        write_atomically(kept, lambda tmp: shutil.copyfile(start, tmp))
        trainer.args.model = str(kept)
        write_atomically(Path(trainer.save_dir) / "args.yaml", lambda tmp: YAML.save(tmp, vars(trainer.args)))

    return keep


def report_writer(report: TransferReport) -> Callable[[Any], None]:
    """A callback that writes ``report`` as a table to ``<run_dir>/attnyolo_transfer.txt``."""

    def write(trainer: Any) -> None:
        if not _is_main_process():
            return
        console = Console(record=True, width=160, file=io.StringIO())
        console.print(report.as_table())
        Path(trainer.save_dir).mkdir(parents=True, exist_ok=True)
        (Path(trainer.save_dir) / TRANSFER_TXT).write_text(console.export_text(), encoding="utf-8")

    return write


# ------------------------------------------------------------------------------------------------- all of them


ULTRALYTICS_RAYTUNE = "ultralytics.utils.callbacks.raytune"
"""Ultralytics' own Ray Tune integration, on whenever ``ray.tune`` imports (its ``raytune`` setting is true by
default): it asks Ray for a Tune session after every epoch (a UserWarning outside one) and reports Ultralytics' keys
inside one. attnyolo's runs drop it; ``attnyolo search`` reports its own keys instead."""


def drop_ultralytics_raytune(trainer: Any) -> None:
    """Trainer callback (``on_pretrain_routine_start``): remove Ultralytics' Ray Tune reporting from the trainer."""
    trainer.callbacks["on_fit_epoch_end"] = [
        c for c in trainer.callbacks["on_fit_epoch_end"] if getattr(c, "__module__", "") != ULTRALYTICS_RAYTUNE
    ]


def add_run_callbacks(
    yolo: Any,
    start: Any,
    *,
    start_pt: Path | None = None,
    freeze_epochs: int = 0,
    resumed: bool = False,
    callbacks: Mapping[str, Any] | None = None,
    recipe: Any = None,
    epochs: int | None = None,
) -> GammaLogger:
    """Register attnyolo's callbacks of a run on ``yolo`` (see the module docstring); return its gamma logger.

    Args:
        yolo: the Ultralytics ``YOLO`` object about to train (``YOLO(start_pt)``, or ``YOLO(last.pt)`` to resume).
        start: the run's :class:`attnyolo.finetune.start.Start` (its model is what the trainer must start from).
        start_pt: the start checkpoint ``yolo`` was loaded from, kept as ``weights/start.pt`` in the run folder.
        freeze_epochs: freeze the transferred tensors for this many epochs (:class:`FreezeTransferred`).
        resumed: ``yolo`` continues an interrupted run: no start check, ``start.pt`` or report (its first start
            has them).
        callbacks: more Ultralytics callbacks, ``{event: function or [functions]}``.
        recipe: an :class:`attnyolo.finetune.recipe.Recipe` (attention warm-up, the new tensors' learning rate),
            installed after the γ optimiser group it builds on; ``epochs``: the run's epochs (it checks its warm-up
            fits).
    """
    logger = add_gamma_logging(yolo)
    yolo.add_callback("on_pretrain_routine_start", drop_ultralytics_raytune)
    if not resumed and start_pt is not None:
        yolo.add_callback("on_pretrain_routine_start", keep_start(start_pt))
    add_gamma_optimiser(yolo)  # gamma: no weight decay, its own learning rate (measured defaults)
    if not resumed:
        if start.report is not None:
            yolo.add_callback("on_pretrain_routine_start", report_writer(start.report))
        expected = {k: v.detach().clone() for k, v in start.model.state_dict().items()}
        yolo.add_callback("on_pretrain_routine_end", start_checker(expected))
    if freeze_epochs:
        transferred = {dst for _, dst in start.report.transferred} if start.report is not None else set()
        freezer = FreezeTransferred(transferred, freeze_epochs)
        yolo.add_callback("on_train_epoch_start", freezer.on_train_epoch_start)
        yolo.add_callback("on_train_batch_start", freezer.on_train_batch_start)
    if recipe is not None:
        recipe.install(yolo, {dst for _, dst in start.report.transferred} if start.report else set(), epochs)
    for event, functions in dict(callbacks or {}).items():
        for function in functions if isinstance(functions, (list, tuple)) else [functions]:
            yolo.add_callback(event, function)
    return logger
