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
    imgsz: int,
    batch_size: int,
    device: str = "",
    single_cls: bool = False,
    workers: int = 0,
    half: bool = True,
) -> tuple[dict[str, np.ndarray], Any]:
    """Validate ``weights`` as YOLOv5's ``train.py`` validates ``best.pt`` at the end of training; keep the per-image
    statistics. Returns ``(stats, results)``: the arrays of ``val_stats.npz`` and what ``val.run`` returned.

    The call is train.py's own: ``val.run(data_dict, model=attempt_load(best).half(), dataloader=...)`` with its
    validation loader (``rect``, ``pad=0.5``, the given batch), NMS IoU 0.60 (0.65 for COCO's val2017). Its
    ``half()`` rounds the fused weights to fp16 even on the CPU (where ``val.run`` casts them back to fp32), which a
    plain ``val.py --weights best.pt`` does not: on the CPU the two differ in the last digits.
    """
    entry.allow_file(weights)  # vetted by attnyolo's safe loader, then torch's weights_only load accepts it
    data_dict = code.module("utils.general").check_dataset(str(data))
    model = code.module("models.experimental").attempt_load(
        str(weights), code.module("utils.torch_utils").select_device(device, batch_size=batch_size)
    )
    if half:
        model = model.half()
    stride = max(int(model.stride.max()), 32)
    imgsz = code.module("utils.general").check_img_size(imgsz, stride, floor=stride * 2)  # as train.py
    loader = code.module("utils.dataloaders").create_dataloader(
        data_dict["val"], imgsz, batch_size, stride, single_cls, rect=True, rank=-1, workers=workers, pad=0.5,
        prefix="val: ",
    )[0]  # fmt: skip
    coco = isinstance(data_dict.get("val"), str) and data_dict["val"].endswith(f"coco{os.sep}val2017.txt")
    val_module = code.module("val")
    recorder = _Recorder(val_module.process_batch)
    callbacks = code.module("utils.callbacks").Callbacks()
    callbacks.register_action("on_val_batch_end", "attnyolo_stats", recorder.on_val_batch_end)
    val_module.process_batch = recorder.process_batch  # looked up at call time by val.run
    try:
        with tempfile.TemporaryDirectory(prefix="attnyolo-val-") as tmp:
            results = val_module.run(
                data_dict,
                batch_size=batch_size,
                imgsz=imgsz,
                model=model,
                iou_thres=0.65 if coco else 0.60,
                single_cls=single_cls,
                dataloader=loader,
                save_dir=Path(tmp),
                plots=False,
                callbacks=callbacks,
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
