"""Per-image validation statistics of a model (``val_stats.npz``), from Ultralytics' own validator.

Ultralytics' detection validator matches each image's predictions to its targets (``tp``: one column per IoU
threshold 0.50:0.05:0.95) and appends them per image before aggregating them into mAP. :func:`collect` keeps
those per-image records, so the statistics of the next stage can resample images (paired bootstrap) and
``ultralytics.utils.metrics.ap_per_class`` over all of them gives back the run's mAP.

Arrays (the contract with the statistics/report code, ``docs/ablate-interface.md``):
``tp`` bool (N_pred, 10); ``conf`` float32 (N_pred,); ``pred_cls`` int32 (N_pred,); ``pred_img`` int32 (N_pred,);
``target_cls`` int32 (N_tgt,); ``target_img`` int32 (N_tgt,); ``images`` str (N_img,) sorted file names;
``names`` str (nc,) class names.

Which number is stored (issue 20): the trainer's own final validation. Ultralytics saves ``best.pt`` with the EMA
weights rounded to fp16 and validates that file at the end of training (``Validating best.pt...``), with the
trainer's validation loader (``rect`` batches of twice the training batch) and, on a GPU with AMP, in fp16.
:func:`trainer_val_settings` reads those settings from the trainer, so :func:`collect_with_metrics` gives back
the final validation's numbers, and :func:`reproduce_command` is the one Ultralytics command that prints them
again from ``best.pt``. The per-epoch ``results.csv`` rows are other numbers: Ultralytics validates the fp32
EMA in memory after each epoch, before the fp16 rounding (measured on the embedded data at imgsz 160:
0.27007 in ``results.csv``, 0.27020 for ``best.pt`` of the same epoch; the fp32 EMA validated alone gives the
``results.csv`` value, the same weights rounded to fp16 give the ``best.pt`` value).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

KEYS = ("tp", "conf", "pred_cls", "pred_img", "target_cls", "target_img", "images", "names")


def _validator_class():
    from ultralytics.models.yolo.detect import DetectionValidator

    class PerImageValidator(DetectionValidator):
        """Ultralytics' detection validator that also keeps every image's matching record."""

        def init_metrics(self, model: Any) -> None:
            super().init_metrics(model)
            self.per_image: list[dict] = []
            update = self.metrics.update_stats

            def record(stat: dict) -> None:
                self.per_image.append(
                    {k: np.asarray(v) for k, v in stat.items() if k != "target_img"} | {"im_name": stat["im_name"]}
                )
                update(stat)

            self.metrics.update_stats = record

    return PerImageValidator


def from_records(records: list[dict], names: dict[int, str] | list[str]) -> dict[str, np.ndarray]:
    """The npz arrays from the validator's per-image records (``tp, conf, pred_cls, target_cls, im_name``)."""
    images = sorted({str(r["im_name"]) for r in records})
    if len(images) != len(records):
        raise ValueError(f"{len(records)} validation records for {len(images)} distinct image names")
    index = {name: i for i, name in enumerate(images)}
    order = sorted(records, key=lambda r: index[str(r["im_name"])])
    niou = 10
    tp = [np.asarray(r["tp"], bool).reshape(-1, niou) for r in order]
    conf = [np.asarray(r["conf"], np.float32).reshape(-1) for r in order]
    pred_cls = [np.asarray(r["pred_cls"]).reshape(-1).astype(np.int32) for r in order]
    target_cls = [np.asarray(r["target_cls"]).reshape(-1).astype(np.int32) for r in order]
    names_list = [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)
    return {
        "tp": np.concatenate(tp) if tp else np.zeros((0, niou), bool),
        "conf": np.concatenate(conf) if conf else np.zeros(0, np.float32),
        "pred_cls": np.concatenate(pred_cls) if pred_cls else np.zeros(0, np.int32),
        "pred_img": np.concatenate([np.full(len(c), i, np.int32) for i, c in enumerate(conf)]).astype(np.int32),
        "target_cls": np.concatenate(target_cls) if target_cls else np.zeros(0, np.int32),
        "target_img": np.concatenate([np.full(len(t), i, np.int32) for i, t in enumerate(target_cls)]).astype(np.int32),
        "images": np.array(images, dtype=str),
        "names": np.array(names_list, dtype=str),
    }


def collect_with_metrics(
    model: Any,
    data: str | os.PathLike,
    imgsz: int,
    *,
    batch: int = 16,
    device: str = "cpu",
    save_dir: str | os.PathLike | None = None,
    **val_args: Any,
) -> tuple[dict[str, np.ndarray], Any]:
    """Validate ``model`` on ``data``'s val split with Ultralytics' validator; keep the per-image statistics.

    Args:
        model: an Ultralytics ``YOLO`` object or a checkpoint path (``best.pt``).
        data: the data YAML.
        imgsz, batch, device: validation settings (use the training recipe's).
        save_dir: folder for the validator's outputs (default: a temporary folder, removed).
        **val_args: more Ultralytics validation arguments (``conf``, ``iou``, ``workers``...).

    Returns:
        ``(stats, metrics)``: the arrays of ``val_stats.npz`` and Ultralytics' ``DetMetrics``.
    """
    from ultralytics import YOLO

    yolo = model if hasattr(model, "val") else YOLO(str(model))
    captured: list = []
    yolo.add_callback("on_val_end", captured.append)
    tmp = None
    if save_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="attnyolo-val-")
        save_dir = tmp.name
    try:
        save_dir = Path(save_dir)
        args = {"plots": False, "verbose": False, "workers": 0, **val_args}
        metrics = yolo.val(
            validator=_validator_class(),
            data=str(data),
            imgsz=imgsz,
            batch=batch,
            device=device,
            split="val",
            project=str(save_dir.parent),
            name=save_dir.name,
            exist_ok=True,
            **args,
        )
    finally:
        if tmp is not None:
            tmp.cleanup()
    validator = captured[-1]
    return from_records(validator.per_image, validator.names), metrics


def trainer_val_settings(trainer: Any) -> dict[str, Any]:
    """The settings of a finished Ultralytics trainer's final validation of ``best.pt``, as ``val`` arguments.

    ``batch``: its validation loader's batch size (Ultralytics validates detection at twice the training batch,
    and ``rect`` batches are shaped per batch, so the batch size can change the letterboxing); ``quantize``: 16
    when the trainer validated in half precision (a GPU with AMP), else ``None``; ``device``: the trainer's.
    A scalar ``fraction`` limits only the training split; a per-split list limits validation too, so it is kept.
    """
    loader = getattr(trainer, "test_loader", None)
    batch = int(loader.batch_size) if loader is not None else 2 * int(trainer.batch_size)
    validator = getattr(trainer, "validator", None)
    quantize = getattr(getattr(validator, "args", None), "quantize", None)
    out: dict[str, Any] = {"batch": batch, "quantize": 16 if str(quantize) == "16" else None}
    device = getattr(trainer, "device", None)
    kind = getattr(device, "type", "cpu")
    out["device"] = "cpu" if kind == "cpu" else str(device.index or 0) if kind == "cuda" else str(device)
    fraction = getattr(trainer.args, "fraction", 1.0)
    if isinstance(fraction, (list, tuple)):
        out["fraction"] = list(fraction)
    return out


def trainer_final_map(trainer: Any) -> float | None:
    """mAP50-95 of the trainer's final validation of ``best.pt`` (``None`` when it did not run)."""
    metrics = getattr(trainer, "metrics", None) or {}
    value = metrics.get("metrics/mAP50-95(B)") if isinstance(metrics, dict) else None
    return float(value) if value is not None else None


def reproduce_command(best: str | os.PathLike, data: str | os.PathLike, imgsz: int, settings: dict[str, Any]) -> str:
    """The command that prints a run's stored metrics again from its ``best.pt`` (Ultralytics' CLI, through
    ``attnyolo yolo`` so that attnyolo's layers are registered; a baseline also loads in plain ``yolo val``)."""
    args = [f"model={best}", f"data={data}", f"imgsz={imgsz}", f"batch={settings['batch']}"]
    if settings.get("quantize"):
        args.append(f"quantize={settings['quantize']}")
    if settings.get("device") not in (None, "", "cpu"):
        args.append(f"device={settings['device']}")
    if settings.get("fraction") is not None:
        args.append(f"fraction=[{','.join(str(f) for f in settings['fraction'])}]")
    return "attnyolo yolo val " + " ".join(args)


def collect(model: Any, data: str | os.PathLike, imgsz: int, **kwargs: Any) -> dict[str, np.ndarray]:
    """The arrays of ``val_stats.npz`` for ``model`` on ``data``'s val split (see :func:`collect_with_metrics`)."""
    return collect_with_metrics(model, data, imgsz, **kwargs)[0]


def save(path: str | os.PathLike, stats: dict[str, np.ndarray]) -> Path:
    """Write ``stats`` to ``path`` (``.npz``) atomically, with the mode the umask gives."""
    path = Path(path)
    missing = [k for k in KEYS if k not in stats]
    if missing:
        raise ValueError(f"val stats lack {', '.join(missing)}")
    from attnyolo.atomic import write_atomically

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: given a name, numpy would append ".npz" to it
            np.savez_compressed(f, **{k: stats[k] for k in KEYS})

    return write_atomically(path, write)


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``val_stats.npz`` (no pickled objects: ``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
