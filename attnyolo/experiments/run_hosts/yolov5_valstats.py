"""Per-image validation statistics (``val_stats.npz``) from YOLOv5's own ``val.run``.

YOLOv5 v7.0's ``val.run`` matches each image's predictions to its targets with its module function
``process_batch`` (``correct``: one column per IoU threshold 0.50:0.05:0.95, the same matching as Ultralytics'
validator) and keeps ``(correct, conf, pred_cls, target_cls)`` per image in a local list. :func:`collect` reads the
same records from the outside, without changing a number: ``process_batch`` is wrapped for the call (it returns
what it returned, and its result is kept), and the ``on_val_batch_end`` callback hands out each batch's
predictions after NMS (and after ``single_cls``), its targets and file names. An image without targets gets an
all-false ``correct`` (YOLOv5 does not call ``process_batch`` for it), as in YOLOv5. The records become the arrays of
:mod:`attnyolo.experiments.valstats` (:func:`~attnyolo.experiments.valstats.from_records`), so the report's paired
bootstrap reads them unchanged; an image with neither predictions nor targets is listed with empty arrays.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnyolo.experiments.valstats import from_records
from attnyolo.hosts.yolov5 import entry
from attnyolo.hosts.yolov5.source import YOLOv5Code

NIOU = 10


class _Recorder:
    """``process_batch``'s results and the ``on_val_batch_end`` batches, turned into per-image records."""

    def __init__(self, process_batch: Any) -> None:
        self.original = process_batch
        self.matched: list[torch.Tensor] = []  # correct matrices of this batch, in YOLOv5's call order
        self.records: list[dict] = []

    def process_batch(self, detections: Any, labels: Any, iouv: Any) -> Any:
        correct = self.original(detections, labels, iouv)
        self.matched.append(correct)
        return correct

    def on_val_batch_end(self, batch_i: int, im: Any, targets: Any, paths: Any, shapes: Any, preds: Any) -> None:
        for si, pred in enumerate(preds):
            labels = targets[targets[:, 0] == si, 1:]
            if len(pred) and len(labels):  # the only case in which val.run calls process_batch
                correct = self.matched.pop(0)
            else:
                correct = torch.zeros(len(pred), NIOU, dtype=torch.bool)
            self.records.append(
                {
                    "tp": correct.cpu().numpy(),
                    "conf": pred[:, 4].float().cpu().numpy(),
                    "pred_cls": pred[:, 5].cpu().numpy(),
                    "target_cls": labels[:, 0].cpu().numpy(),
                    "im_name": Path(paths[si]).name,
                }
            )
        if self.matched:
            raise RuntimeError(f"YOLOv5's val.run matched {len(self.matched)} more images than it validated")


def collect(
    code: YOLOv5Code,
    weights: str | os.PathLike,
    data: str | os.PathLike,
    names: dict[int, str],
    *,
    yolov5: str | os.PathLike | None = None,
    **val_options: Any,
) -> tuple[dict[str, np.ndarray], Any]:
    """Validate ``weights`` with YOLOv5's ``val.run`` (:func:`attnyolo.hosts.yolov5.entry.val`); keep the per-image
    statistics. Returns ``(stats, results)``: the arrays of ``val_stats.npz`` and what ``val.run`` returned."""
    val_module = code.module("val")
    recorder = _Recorder(val_module.process_batch)
    callbacks = code.module("utils.callbacks").Callbacks()
    callbacks.register_action("on_val_batch_end", "attnyolo_stats", recorder.on_val_batch_end)
    val_module.process_batch = recorder.process_batch  # looked up at call time by val.run
    try:
        with tempfile.TemporaryDirectory(prefix="attnyolo-val-") as tmp:  # val.run makes its folder (runs/val/exp)
            results = entry.val(
                weights=weights, data=data, yolov5=yolov5, callbacks=callbacks, project=tmp, name="val", **val_options
            )
    finally:
        val_module.process_batch = recorder.original
    return from_records(recorder.records, names), results


def per_class_ap(code: YOLOv5Code, stats: dict[str, np.ndarray]) -> dict[int, float]:
    """AP50-95 of every class with targets, by YOLOv5's own ``ap_per_class`` over the arrays (0 without any match)."""
    if not len(stats["target_cls"]):
        return {}
    ap_per_class = code.module("utils.metrics").ap_per_class
    *_, ap, classes = ap_per_class(stats["tp"], stats["conf"], stats["pred_cls"], stats["target_cls"], names={})
    return {int(c): float(ap[i].mean()) for i, c in enumerate(classes)}
