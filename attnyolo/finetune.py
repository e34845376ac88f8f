"""Fine-tuning with attention: base checkpoint -> insert -> build -> transfer -> Ultralytics' own trainer.

:func:`finetune` is the whole loop of issue #7 in one call (CLI: ``attnyolo finetune BASE.pt NAME``):

1. load the base checkpoint safely (:func:`attnyolo.checkpoints.load_checkpoint`; ``trust=True`` for a full
   pickle) and read its architecture from the model it holds (``ema``, else ``model``: ``model.yaml``) or from the
   metadata of an attnyolo ``.safetensors``; the YAML is checked before anything builds it;
2. insert the attention (:func:`attnyolo.insert`, identity start by default) and build the edited model with the
   data's class count;
3. transfer every base tensor through the insertion's index map (:func:`attnyolo.transfer`) and print the
   report; when the data has another class count than the base, the head's class convolutions are the only
   tensors left behind (anything else left behind is an error). Steps 1-3 are :func:`prepare`, usable alone;
4. train with Ultralytics' trainer: the transferred model is saved as an Ultralytics checkpoint and trained with
   ``YOLO(that).train(data=..., **yolo_args)``, so hyper-parameters, callbacks, ``runs/detect/train*`` folders,
   ``results.csv`` and ``weights/best.pt`` are Ultralytics' own. Ultralytics rebuilds the model from its YAML
   and loads the weights by key (``DetectionModel.load``); the keys are identical by construction, and a
   callback checks at ``on_pretrain_routine_end`` that every tensor of the model about to be trained equals the
   transferred one (it raises otherwise), so nothing is re-initialised or dropped silently.

Callbacks registered on the run (usable on any ``YOLO`` object too):

- :class:`GammaLogger` (:func:`add_gamma_logging`): every identity-start ``gamma`` (see
  :mod:`attnyolo.graph.ultralytics`) at the start (epoch 0) and after each epoch, in
  ``<run_dir>/attnyolo_gamma.csv`` (columns ``epoch, layer, attention, gamma, gamma_ema``; ``gamma_ema`` is the
  EMA model's value, the one ``best.pt`` holds). The file is rewritten atomically at each epoch end.
- the start checkpoint (the transferred model, before any training) is kept as ``<run_dir>/weights/start.pt`` and
  recorded as ``model`` in the run's ``args.yaml``, so ``attnyolo yolo train cfg=<run_dir>/args.yaml`` reruns it.
- :class:`FreezeTransferred` (``freeze_epochs=N``): for the first N epochs the transferred (base) parameters get
  no gradient and the base's BatchNorm layers keep their running statistics; from epoch N on they train again
  (the optimiser holds them from the start, so nothing is rebuilt). Only the inserted layers, their ``gamma``
  and any head tensors the base could not provide train during the frozen epochs.

How gamma evolves: ``gamma`` starts at 0, so the first forward pass is the base model's. Its gradient
``<dL/dy, attn(x) - x>`` is non-zero at the first step while the attention's own gradients are scaled by
``gamma`` (0 at step 0), so ``gamma`` moves first and the attention follows (ReZero). The CSV shows it: a
``gamma`` that stays near 0 means the data gives that attention no use (weight decay pulls it back towards
the identity); one that grows means the layer is being used.

Not covered: multi-GPU (DDP) runs start Ultralytics' trainer in a subprocess that does not carry these
callbacks (the transfer still holds: the subprocess loads the transferred checkpoint, but ``start.pt`` is not kept in
the run folder); resuming with
``yolo train resume`` continues training without them.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnyolo.atomic import write_atomically
from attnyolo.checkpoints import (
    CheckpointError,
    check_model_yaml,
    load_checkpoint,
    safetensors_model_yaml,
    save_ultralytics_checkpoint,
)
from attnyolo.errors import AttnYoloError
from attnyolo.graph.layers import METADATA_KEY, layers
from attnyolo.models import checkpoint_model, unwrap
from attnyolo.weights import TransferError, TransferReport, transfer

GAMMA_CSV = "attnyolo_gamma.csv"
"""File name of the gamma log inside a run folder."""
GAMMA_COLUMNS = ("epoch", "layer", "attention", "gamma", "gamma_ema")
TRANSFER_TXT = "attnyolo_transfer.txt"
"""File name of the transfer report written into a fine-tuning run folder."""

_REFUSED_ARGS = {
    "model": "the model is the base checkpoint with the attention inserted",
    "pretrained": "the pretrained weights are the base checkpoint's, transferred by attnyolo",
    "resume": "resume an interrupted run with `attnyolo yolo train resume model=RUN/weights/last.pt`",
    "data": "pass the data YAML as data= / --data",
}


class FinetuneError(AttnYoloError):
    """A fine-tuning run that cannot start: no architecture in the base checkpoint, bad arguments."""


@dataclass
class FinetuneResult:
    """What :func:`finetune` produced.

    Attributes:
        model: the Ultralytics ``YOLO`` object after training (``best.pt`` loaded, as ``YOLO.train`` leaves it).
        report: the weight transfer from the base checkpoint.
        cfg: the edited model YAML (with its ``attnyolo`` record).
        save_dir: the run folder (``runs/detect/train*`` or ``project/name``).
        best: ``save_dir/weights/best.pt``.
        gamma_csv: ``save_dir/attnyolo_gamma.csv`` (absent when no inserted layer has a gamma).
        metrics: Ultralytics' validation metrics of the final model.
    """

    model: Any
    report: TransferReport
    cfg: dict
    save_dir: Path
    best: Path
    gamma_csv: Path
    metrics: Any


# ---------------------------------------------------------------------------------------------------- gamma logging


def gamma_values(model: Any) -> list[tuple[int | str, str, float]]:
    """``(layer, attention name, gamma)`` of every inserted layer that has an identity-start gamma; ``layer`` is
    the layer index, or ``"15.m.0.attn"`` for an attention inside a block's bottleneck."""
    from attnyolo.graph.ultralytics import AttentionLayer

    def has_gamma(m: nn.Module) -> bool:
        return isinstance(m, AttentionLayer) and getattr(m, "gamma", None) is not None

    net = unwrap(model)
    out: list[tuple[int | str, str, float]] = []
    for i, layer in enumerate(getattr(net, "model", [])):
        found = [(i, layer)] if has_gamma(layer) else []
        found += [(f"{i}.{name}", m) for name, m in layer.named_modules() if name and has_gamma(m)]
        out += [(label, m.attention, float(m.gamma.detach().float().cpu())) for label, m in found]
    return out


def _row_order(key: tuple[int, int | str]) -> tuple[int, int, str]:
    # CSV rows by epoch, then layer index, inside-block attentions ("15.m.0.attn") after their layer's number
    epoch, layer = key
    return epoch, int(str(layer).split(".")[0]), str(layer)


def _is_main_process() -> bool:
    from ultralytics.utils import RANK

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
        from attnyolo.graph.ultralytics import AttentionLayer

        gammas = [m.gamma for m in unwrap(model).modules() if isinstance(m, AttentionLayer) and m.gamma is not None]
        ids = {id(g) for g in gammas}
        template = None
        for group in optimizer.param_groups:
            kept = [p for p in group["params"] if id(p) not in ids]
            if len(kept) != len(group["params"]):
                template = template or group
                group["params"] = kept
        if template is None:
            return
        settings = {k: v for k, v in template.items() if k not in ("params", "use_muon")}
        settings |= {"weight_decay": self.weight_decay, "lr": template["lr"] * self.lr_scale, "param_group": "gamma"}
        optimizer.add_param_group({"params": gammas, **settings})


def add_gamma_optimiser(
    model: Any, weight_decay: float = GAMMA_WEIGHT_DECAY, lr_scale: float = GAMMA_LR_SCALE
) -> GammaOptimiser:
    """Register a :class:`GammaOptimiser` on an Ultralytics ``YOLO`` object (before ``model.train()``)."""
    hook = GammaOptimiser(weight_decay, lr_scale)
    model.add_callback("on_pretrain_routine_start", hook.on_pretrain_routine_start)
    return hook


# ------------------------------------------------------------------------------------------------------- finetuning


def base_architecture(path: Path, ckpt: Mapping[str, Any], trust: bool) -> tuple[dict, dict | None]:
    """The base model's YAML dict and its class names, from the checkpoint's model or a safetensors' metadata."""
    net = checkpoint_model(ckpt)
    if net is not None:
        cfg, names = getattr(net, "yaml", None), getattr(net, "names", None)
    else:  # load_checkpoint has read this file already: its header is valid
        cfg = safetensors_model_yaml(path) if path.suffix == ".safetensors" else None
        names = None
    if not isinstance(cfg, dict):
        raise CheckpointError(
            f"{path}: holds no model architecture (no model with a YAML, no attnyolo safetensors metadata): "
            "finetune needs a checkpoint saved by Ultralytics training or by attnyolo.save_safetensors"
        )
    if not trust:  # parse_model would eval() an activation string and look names up in its module globals
        check_model_yaml(path, cfg)
    return dict(cfg), dict(names) if isinstance(names, Mapping) else None


def check_yolo_args(yolo_args: Mapping[str, Any]) -> None:
    from ultralytics.cfg import DEFAULT_CFG_DICT

    from attnyolo.yolo_args import check_values, unknown_key_message

    for key in yolo_args:
        if key in _REFUSED_ARGS:
            raise FinetuneError(f"yolo argument {key}= cannot be set here: {_REFUSED_ARGS[key]}")
        if key not in DEFAULT_CFG_DICT:
            raise FinetuneError(unknown_key_message(key, DEFAULT_CFG_DICT, "an Ultralytics training argument"))
    try:
        check_values(yolo_args)
    except AttnYoloError as e:
        raise FinetuneError(str(e)) from None


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


def start_checker(expected: dict[str, torch.Tensor]):
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


def _keep_start(start: Path):
    """Copy the start checkpoint into the run's ``weights`` folder and record it as ``model`` in ``args.yaml``.

    Ultralytics writes ``args.yaml`` before any callback runs, with ``model`` = the temporary start file; this
    rewrites it once the copy is in place, so ``attnyolo yolo train cfg=RUN/args.yaml`` reruns the same fine-tuning.
    """

    def keep(trainer: Any) -> None:
        if not _is_main_process():
            return
        from ultralytics.utils import YAML

        wdir = Path(trainer.wdir)
        wdir.mkdir(parents=True, exist_ok=True)
        kept = wdir / START_PT
        write_atomically(kept, lambda tmp: shutil.copyfile(start, tmp))
        trainer.args.model = str(kept)
        write_atomically(Path(trainer.save_dir) / "args.yaml", lambda tmp: YAML.save(tmp, vars(trainer.args)))

    return keep


def report_writer(report: TransferReport):
    def write(trainer: Any) -> None:
        if not _is_main_process():
            return
        from rich.console import Console

        console = Console(record=True, width=160, file=io.StringIO())
        console.print(report.as_table())
        Path(trainer.save_dir).mkdir(parents=True, exist_ok=True)
        (Path(trainer.save_dir) / TRANSFER_TXT).write_text(console.export_text(), encoding="utf-8")

    return write


@dataclass
class Prepared:
    """The start of a fine-tuning run (:func:`prepare`): the edited model holding the transferred base weights.

    Attributes:
        model: the edited Ultralytics model (data's classes and names), before any training.
        cfg: its YAML dict (with the ``attnyolo`` record; ``base`` is the checkpoint path).
        index_map: base layer -> edited layer.
        report: the transfer from the base checkpoint.
    """

    model: nn.Module
    cfg: dict
    index_map: Any
    report: TransferReport


def prepare(
    base: str | os.PathLike,
    attention: str | list,
    where: Any = "neck",
    data: str | os.PathLike | None = None,
    *,
    trust: bool = False,
    identity_start: bool = True,
    hparams: Mapping[str, Any] | None = None,
) -> Prepared:
    """Steps 1-3 of :func:`finetune` (no training): load ``base`` safely, insert, build for ``data``'s classes,
    transfer. Arguments as in :func:`finetune`.

    Raises:
        CheckpointError, TransferError, FinetuneError, DataError, GraphError: see :func:`finetune`.
    """
    from ultralytics.nn.tasks import guess_model_task

    from attnyolo.datasets import check_data
    from attnyolo.graph import build, insert

    if data is None:
        raise FinetuneError("finetune needs data= (an Ultralytics data YAML; attnyolo.data.default_dataset() is the "
                            "embedded one)")  # fmt: skip
    path = Path(base)
    ckpt = load_checkpoint(path, trust=trust)
    base_cfg, base_names = base_architecture(path, ckpt, trust)
    task = guess_model_task(base_cfg)
    if task != "detect":
        raise FinetuneError(
            f"{path}: a {task} model ({layers(base_cfg)[-1].module} head); finetune takes detection models"
        )
    info = check_data(data)
    nc, names = int(info["nc"]), dict(info["names"])

    cfg, imap = insert(base_cfg, attention, where, identity_start=identity_start, **dict(hparams or {}))
    record = cfg.get(METADATA_KEY, {})
    cfg[METADATA_KEY] = {"base": record.get("base") or str(path), **{k: v for k, v in record.items() if k != "base"}}
    cfg["nc"] = nc  # the data's class count (the head's class convs are new when the base had another)
    model = build(cfg, nc=nc)
    model.names = names
    report = transfer(model, ckpt, imap)
    report.source = str(path)
    check_left_behind(report, len(layers(base_cfg)) - 1, base_cfg.get("nc", len(base_names or {}) or None), nc)
    return Prepared(model=model, cfg=cfg, index_map=imap, report=report)


def finetune(
    base: str | os.PathLike,
    attention: str | list,
    where: Any = "neck",
    data: str | os.PathLike | None = None,
    *,
    trust: bool = False,
    freeze_epochs: int = 0,
    identity_start: bool = True,
    hparams: Mapping[str, Any] | None = None,
    callbacks: Mapping[str, Any] | None = None,
    print_report: bool = True,
    recipe: Any = None,
    **yolo_args: Any,
) -> FinetuneResult:
    """Fine-tune a trained base model with attention inserted, keeping every base weight.

    Args:
        base: the base checkpoint: an Ultralytics ``.pt`` (``best.pt``/``last.pt``) or an attnyolo
            ``.safetensors`` (:func:`attnyolo.save_safetensors`).
        attention: a zoo name (``"cbam"``) or a list, as :func:`attnyolo.insert` takes.
        where: the placement: ``"neck"`` (default), ``"backbone"``, ``"before_head"`` or base layer indices.
        data: an Ultralytics data YAML (``attnyolo.data.default_dataset()`` is the embedded one).
        trust: load ``base`` with a full pickle (only for files whose origin you trust).
        freeze_epochs: train only the new layers (and any head tensors the base could not provide) for this many
            epochs first (:class:`FreezeTransferred`).
        identity_start: start each inserted layer as the identity (``gamma = 0``); see :func:`attnyolo.insert`.
        hparams: the attention's hyper-parameters (``{"rd_ratio": 0.25}``).
        callbacks: more Ultralytics callbacks, ``{event: function or [functions]}`` (``"on_fit_epoch_end"``...).
        print_report: print the transfer report table.
        recipe: an :class:`attnyolo.recipe.Recipe` (attention warm-up, the new tensors' learning rate), or ``None``.
        **yolo_args: Ultralytics training arguments (``epochs``, ``imgsz``, ``batch``, ``device``, ``project``,
            ``name``...), passed to ``YOLO.train`` unchanged.

    Returns:
        A :class:`FinetuneResult` (run folder, ``best.pt``, gamma log, transfer report, metrics).

    Raises:
        CheckpointError: a base that cannot be loaded safely or holds no architecture.
        TransferError: a base tensor that would be left behind, or a trainer that did not start from the
            transferred weights.
        FinetuneError, DataError, GraphError: bad arguments, data YAML or placement, a base that is not a detector.
    """
    from ultralytics import YOLO

    if isinstance(freeze_epochs, bool) or not isinstance(freeze_epochs, int) or freeze_epochs < 0:
        raise FinetuneError(f"freeze_epochs must be an integer >= 0, got {freeze_epochs!r}")
    check_yolo_args(yolo_args)
    prepared = prepare(base, attention, where, data, trust=trust, identity_start=identity_start, hparams=hparams)
    model, report = prepared.model, prepared.report
    if print_report:
        from rich.console import Console

        Console().print(report.as_table())

    expected = {k: v.detach().clone() for k, v in model.state_dict().items()}
    tmp = Path(tempfile.mkdtemp(prefix="attnyolo-finetune-"))
    try:
        start = tmp / f"{Path(base).stem}-attnyolo-start.pt"
        save_ultralytics_checkpoint(model, start, {"base": str(base), "transfer": report.counts}, data=data)
        yolo = YOLO(str(start))
        logger = add_gamma_logging(yolo)
        yolo.add_callback("on_pretrain_routine_start", _keep_start(start))
        add_gamma_optimiser(yolo)  # gamma: no weight decay (measured default)
        yolo.add_callback("on_pretrain_routine_start", report_writer(report))
        yolo.add_callback("on_pretrain_routine_end", start_checker(expected))
        if freeze_epochs:
            freezer = FreezeTransferred({dst for _, dst in report.transferred}, freeze_epochs)
            yolo.add_callback("on_train_epoch_start", freezer.on_train_epoch_start)
            yolo.add_callback("on_train_batch_start", freezer.on_train_batch_start)
        if recipe is not None:  # attnyolo.recipe.Recipe (not imported here: it builds on FreezeTransferred)
            recipe.install(yolo, {dst for _, dst in report.transferred}, yolo_args.get("epochs"))
        for event, functions in dict(callbacks or {}).items():
            for function in functions if isinstance(functions, (list, tuple)) else [functions]:
                yolo.add_callback(event, function)
        metrics = yolo.train(data=str(data), **yolo_args)
        trainer = yolo.trainer
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    save_dir = Path(trainer.save_dir)
    return FinetuneResult(
        model=yolo,
        report=report,
        cfg=prepared.cfg,
        save_dir=save_dir,
        best=Path(trainer.best),
        gamma_csv=logger.path or save_dir / GAMMA_CSV,
        metrics=metrics,
    )
