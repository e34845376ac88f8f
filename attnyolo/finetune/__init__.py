"""Fine-tuning with attention: base checkpoint -> insert -> build -> transfer -> Ultralytics' own trainer.

:func:`finetune` is the whole loop of issue #7 in one call (CLI: ``attnyolo finetune BASE.pt NAME``):

1. load the base checkpoint safely (:func:`attnyolo.checkpoints.load_checkpoint`; ``trust=True`` for a full
   pickle) and read its architecture once (:func:`attnyolo.checkpoints.architecture`: the model it holds, or the
   metadata of an attnyolo ``.safetensors``); the YAML is checked before anything builds it, and a base that is not
   a detector is refused;
2. insert the attention (:func:`attnyolo.insert`, identity start by default) and build the edited model with the
   data's class count, every new tensor drawn under the run's ``seed`` (Ultralytics' ``seed=``, 0 by default);
3. transfer every base tensor through the insertion's index map (:func:`attnyolo.transfer`) and print the
   report; when the data has another class count than the base, one line says so and the head's class
   convolutions are the only tensors left behind (anything else left behind is an error). Steps 1-3 are
   :func:`prepare`, usable alone;
4. train with Ultralytics' trainer: the transferred model is saved as an Ultralytics checkpoint and trained with
   ``YOLO(that).train(data=..., **yolo_args)``, so hyper-parameters, callbacks, ``runs/detect/train*`` folders,
   ``results.csv`` and ``weights/best.pt`` are Ultralytics' own. Ultralytics rebuilds the model from its YAML
   and loads the weights by key (``DetectionModel.load``); the keys are identical by construction, and a
   callback checks at ``on_pretrain_routine_end`` that every tensor of the model about to be trained equals the
   transferred one (it raises otherwise), so nothing is re-initialised or dropped silently.

Steps 1-3 are :mod:`.start` (:func:`~.start.load_base`, :func:`~.start.build_start`), the callbacks of step 4 are
:mod:`.callbacks` (:func:`~.callbacks.add_run_callbacks`); every grid run (:mod:`attnyolo.experiments.runner`)
uses the same functions, so a fine-tuning run and a grid run with the same base, attention and seed start from the
same tensors.

The attention recipe (``recipe=``, :mod:`.recipe`): by default the new tensors train at lr0 x 100 and gamma at
lr0 x 300, after a 1-epoch attention warm-up (transferred tensors frozen, a step per batch) when the run has at
least 2 epochs, so that the inserted attention is actually used at a short budget (measured in
docs/results/finetune_recipes.md); ``recipe="none"`` is Ultralytics' own schedule with gamma at lr0 x 10.

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

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from ultralytics import YOLO
from ultralytics.cfg import DEFAULT_CFG_DICT

from attnyolo.checkpoints import save_ultralytics_checkpoint
from attnyolo.data.check import check_data
from attnyolo.finetune.callbacks import (
    GAMMA_COLUMNS,
    GAMMA_CSV,
    GAMMA_LR_SCALE,
    GAMMA_WEIGHT_DECAY,
    START_PT,
    TRANSFER_TXT,
    FreezeTransferred,
    GammaLogger,
    GammaOptimiser,
    add_gamma_logging,
    add_gamma_optimiser,
    add_run_callbacks,
    gamma_values,
    keep_start,
    report_writer,
    start_checker,
)
from attnyolo.finetune.errors import FinetuneError
from attnyolo.finetune.recipe import RECIPE_DEFAULT, recipe_from
from attnyolo.finetune.start import (
    Base,
    Prepared,
    Start,
    build_start,
    check_detector,
    check_left_behind,
    check_yolo_args,
    class_change,
    load_base,
    seed_all,
    seeded,
)
from attnyolo.weights import TransferReport

__all__ = [
    "GAMMA_COLUMNS",
    "GAMMA_CSV",
    "GAMMA_LR_SCALE",
    "GAMMA_WEIGHT_DECAY",
    "START_PT",
    "TRANSFER_TXT",
    "Base",
    "FinetuneError",
    "FinetuneResult",
    "FreezeTransferred",
    "GammaLogger",
    "GammaOptimiser",
    "Prepared",
    "Start",
    "add_gamma_logging",
    "add_gamma_optimiser",
    "add_run_callbacks",
    "build_start",
    "check_detector",
    "check_freeze_epochs",
    "check_left_behind",
    "check_yolo_args",
    "class_change",
    "finetune",
    "gamma_values",
    "keep_start",
    "load_base",
    "prepare",
    "report_writer",
    "seed_all",
    "seeded",
    "start_checker",
]


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


def check_freeze_epochs(freeze_epochs: Any) -> int:
    """``freeze_epochs`` as an int >= 0, else a one-line :class:`FinetuneError`."""
    if isinstance(freeze_epochs, bool) or not isinstance(freeze_epochs, int) or freeze_epochs < 0:
        raise FinetuneError(f"freeze_epochs must be an integer >= 0, got {freeze_epochs!r}")
    return freeze_epochs


def prepare(
    base: str | os.PathLike,
    attention: str | list,
    where: Any = "neck",
    data: str | os.PathLike | None = None,
    *,
    trust: bool = False,
    identity_start: bool = True,
    hparams: Mapping[str, Any] | None = None,
    seed: int = DEFAULT_CFG_DICT["seed"],
) -> Start:
    """Steps 1-3 of :func:`finetune` (no training): load ``base`` safely, insert, build for ``data``'s classes
    under ``seed``, transfer. Arguments as in :func:`finetune`.

    Raises:
        CheckpointError, TransferError, FinetuneError, DataError, GraphError: see :func:`finetune`.
    """
    if data is None:
        raise FinetuneError("finetune needs data= (an Ultralytics data YAML; attnyolo.data.default_dataset() is the "
                            "embedded one)")  # fmt: skip
    loaded = load_base(base, trust=trust)
    info = check_data(data)
    return build_start(
        loaded,
        attention,
        where,
        nc=int(info["nc"]),
        names=dict(info["names"]),
        seed=seed,
        identity_start=identity_start,
        hparams=hparams,
    )


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
    recipe: Any = RECIPE_DEFAULT,
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
        recipe: the attention recipe (attention warm-up, the new tensors' and gamma's learning rates; measured in
            docs/results/finetune_recipes.md): ``"default"`` (:func:`attnyolo.finetune.recipe.default_recipe`: new
            tensors at lr0 x 100, gamma at lr0 x 300, a 1-epoch warm-up when ``epochs >= 2`` and no
            ``freeze_epochs``), ``"none"`` or ``None`` (Ultralytics' own schedule, gamma at lr0 x 10), a
            :class:`attnyolo.finetune.recipe.Recipe`, or a mapping of its fields.
        **yolo_args: Ultralytics training arguments (``epochs``, ``imgsz``, ``batch``, ``device``, ``project``,
            ``name``...), passed to ``YOLO.train`` unchanged. ``seed`` (Ultralytics' default 0) also seeds the new
            tensors of the start model, as in a grid run.

    Returns:
        A :class:`FinetuneResult` (run folder, ``best.pt``, gamma log, transfer report, metrics).

    Raises:
        CheckpointError: a base that cannot be loaded safely or holds no architecture.
        TransferError: a base tensor that would be left behind, or a trainer that did not start from the
            transferred weights.
        FinetuneError, DataError, GraphError: bad arguments, data YAML or placement, a base that is not a detector.
        RecipeError: a recipe that is not default/none/a Recipe/a mapping of its fields, a bad factor, a warm-up
            longer than ``epochs`` or next to ``freeze_epochs`` (before anything is built).
    """
    check_freeze_epochs(freeze_epochs)
    check_yolo_args(yolo_args)
    recipe = recipe_from(recipe, yolo_args.get("epochs"), freeze_epochs)
    seed = int(yolo_args.get("seed", DEFAULT_CFG_DICT["seed"]))
    start = prepare(
        base, attention, where, data, trust=trust, identity_start=identity_start, hparams=hparams, seed=seed
    )
    report = start.report
    console = Console()
    if print_report:
        console.print(report.as_table())
    if start.class_change:
        console.print(f"finetune: {start.class_change}", soft_wrap=True)

    tmp = Path(tempfile.mkdtemp(prefix="attnyolo-finetune-"))
    try:
        start_pt = tmp / f"{Path(base).stem}-attnyolo-start.pt"
        save_ultralytics_checkpoint(start.model, start_pt, {"base": str(base), "transfer": report.counts}, data=data)
        yolo = YOLO(str(start_pt))
        logger = add_run_callbacks(
            yolo,
            start,
            start_pt=start_pt,
            freeze_epochs=freeze_epochs,
            callbacks=callbacks,
            recipe=recipe,
            epochs=yolo_args.get("epochs"),
        )
        metrics = yolo.train(data=str(data), **yolo_args)
        trainer = yolo.trainer
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    save_dir = Path(trainer.save_dir)
    return FinetuneResult(
        model=yolo,
        report=report,
        cfg=start.cfg,
        save_dir=save_dir,
        best=Path(trainer.best),
        gamma_csv=logger.path or save_dir / GAMMA_CSV,
        metrics=metrics,
    )
