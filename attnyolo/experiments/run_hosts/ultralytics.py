"""The grid runner's Ultralytics 8 host: ``YOLO(start.pt).train`` with attnyolo's run callbacks, best.pt validated
by Ultralytics' own validator (:mod:`attnyolo.experiments.valstats`), resumable runs.

Everything here was the runner's own code before the runner talked to hosts; it is unchanged, so an Ultralytics
grid stores the same numbers as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from ultralytics import YOLO

from attnyolo.checkpoints import save_ultralytics_checkpoint
from attnyolo.experiments import valstats
from attnyolo.experiments.run_hosts.csv_rows import read_csv
from attnyolo.finetune import add_run_callbacks, check_yolo_args, load_base
from attnyolo.graph.layers import is_yolov5_original
from attnyolo.hosts.base import HostFormatError, PathLike, TrainedRun
from attnyolo.hosts.ultralytics import UltralyticsHost

ATTEMPTS = "attnyolo_attempts.txt"  # the first epoch of each resumed attempt of a run (train_seconds)


def configured_yolo(
    start_pt: Path,
    start: Any,
    run_id: str = "",
    on_epoch: Callable | None = None,
    *,
    freeze_epochs: int = 0,
    recipe: Any = None,
    epochs: int | None = None,
    resumed: bool = False,
) -> Any:
    """``YOLO(start_pt)`` (or ``YOLO(last.pt)`` when ``resumed``) with attnyolo's callbacks of every run
    (:func:`attnyolo.finetune.add_run_callbacks`: gamma log and group, start check, ``start.pt``, transfer report,
    freezing) and the grid's progress.

    The callbacks travel with the trainer into a DDP launch (Ultralytics cloudpickles them with the model).
    """
    yolo = YOLO(str(start_pt))
    add_run_callbacks(
        yolo, start, start_pt=start_pt, freeze_epochs=freeze_epochs, resumed=resumed, recipe=recipe, epochs=epochs
    )
    _add_epoch_callback(yolo, run_id, on_epoch)
    return yolo


def _add_epoch_callback(yolo: Any, run_id: str, on_epoch: Callable | None) -> None:
    if on_epoch is not None:
        yolo.add_callback("on_train_epoch_end", lambda tr: on_epoch(run_id, int(tr.epoch) + 1, int(tr.epochs)))


def resumable(last: Path) -> int | None:
    """The epoch (0-based, Ultralytics' count) that ``last.pt`` finished, if the run can continue from it."""
    if not last.is_file():
        return None
    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=False)  # this run's own file, written by us
    except Exception:
        return None
    epoch = int(ckpt.get("epoch", -1))
    return epoch if epoch >= 0 and ckpt.get("optimizer") is not None else None


def train_seconds(epochs: list[dict], attempt_starts: list[int] = ()) -> float | None:
    """The training time of a run from its ``results.csv`` rows, summed over a kill and its resumes.

    Ultralytics' ``time`` column counts from the start of the current training attempt, so each attempt's times are
    added to the time spent up to the epoch it resumed from. ``attempt_starts``: the first epoch (1-based, as in
    ``results.csv``) of every resumed attempt (:data:`ATTEMPTS` in the run folder); the row of an epoch done twice
    (written before a kill, then again) is the later one. The part of an epoch killed before it finished is not
    counted: it was done again.
    """
    rows = {}
    for row in epochs:  # the later row of an epoch wins: the attempt that completed it
        epoch, seconds = row.get("epoch"), row.get("time")
        if isinstance(epoch, int) and isinstance(seconds, (int, float)):
            rows[epoch] = float(seconds)
    if not rows:
        return None
    starts = sorted(set(attempt_starts))
    elapsed: dict[int, float] = {0: 0.0}
    for epoch in sorted(rows):
        start = max((s for s in starts if s <= epoch), default=1)
        elapsed[epoch] = elapsed.get(start - 1, 0.0) + rows[epoch]
    return elapsed[max(rows)]


def attempt_starts(run_dir: Path) -> list[int]:
    path = run_dir / ATTEMPTS
    return [int(v) for v in path.read_text().split()] if path.is_file() else []


class UltralyticsGridHost(UltralyticsHost):
    """Ultralytics 8 as the grid runner's host (:class:`attnyolo.hosts.base.GridHost`)."""

    def load_base(self, weights: PathLike | None, model: Any, *, trust: bool = False) -> Any:
        base = load_base(weights, model, trust=trust, user="ablate")
        if is_yolov5_original(base.cfg):
            raise HostFormatError(
                f"{base.name}: an original YOLOv5 (v7.0) model (anchors:, Detect [nc, anchors]); the ultralytics host "
                "trains Ultralytics-8 models: give host: yolov5 (attnyolo ablate --host yolov5) to train it with "
                "YOLOv5's own train.py"
            )
        return base

    def check_recipe(self, recipe: Mapping[str, Any]) -> None:
        check_yolo_args(recipe)

    def save_start(self, model: nn.Module, path: PathLike, data: PathLike, meta: Mapping[str, Any]) -> Path:
        """The run's start model as the Ultralytics checkpoint ``YOLO(path)`` loads (as :func:`attnyolo.finetune`)."""
        return save_ultralytics_checkpoint(model, path, meta, data=data)

    def resumable(self, last: Path) -> int | None:
        return resumable(last)

    def train_run(
        self,
        start: Any,
        start_pt: Path | None,
        *,
        data: PathLike,
        seed: int,
        project: Path,
        name: str,
        recipe: Mapping[str, Any],
        schedule: Mapping[str, Any],
        on_epoch: Callable | None = None,
        resume_from: Path | None = None,
    ) -> TrainedRun:
        if resume_from is not None:  # killed mid-training: continue from the last finished epoch
            yolo = configured_yolo(resume_from, start, name, on_epoch, resumed=True, **schedule)
            yolo.train(resume=True)
        else:
            yolo = configured_yolo(start_pt, start, name, on_epoch, **schedule)
            yolo.train(data=data, seed=seed, project=str(project), name=name, exist_ok=True, **recipe)
        trainer = yolo.trainer
        save_dir = Path(trainer.save_dir)
        train_args = yaml.safe_load((save_dir / "args.yaml").read_text())
        epochs = read_csv(save_dir / "results.csv")
        return TrainedRun(
            save_dir=save_dir,
            train_args=train_args,
            imgsz=int(train_args.get("imgsz", 640)),
            # the trainer's final validation of best.pt, repeated with its settings: the stored numbers are
            # Ultralytics' own, and one documented command prints them again (see valstats.trainer_val_settings)
            val_settings=valstats.trainer_val_settings(trainer),
            final_map50_95=valstats.trainer_final_map(trainer),
            epochs=epochs,
            seconds=train_seconds(epochs, attempt_starts(save_dir)),  # Ultralytics' own clock, over resumes
        )

    def per_image_stats(
        self, best: Path, data: PathLike, imgsz: int, settings: Mapping[str, Any]
    ) -> tuple[dict, dict[str, Any]]:
        stats, metrics = valstats.collect_with_metrics(best, data, imgsz, **settings)
        box = metrics.box
        return stats, {
            "precision": float(box.mp),
            "recall": float(box.mr),
            "mAP50": float(box.map50),
            "mAP50-95": float(box.map),
            "per_class": {int(c): float(box.ap[i].mean()) for i, c in enumerate(box.ap_class_index)},
        }

    def load_trained(self, best: Path) -> nn.Module:
        return YOLO(str(best)).model.float().eval()

    def reproduce_command(self, best: PathLike, data: PathLike, imgsz: int, settings: Mapping[str, Any]) -> str:
        return valstats.reproduce_command(best, data, imgsz, dict(settings))

    def versions(self) -> dict[str, str]:
        return {}  # the runner records Ultralytics' version for every grid
