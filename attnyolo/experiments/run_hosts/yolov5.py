"""The grid runner's YOLOv5 v7.0 host: the start model built by YOLOv5's own ``Model`` with every base tensor
transferred, trained by YOLOv5's own ``train.py`` (:func:`attnyolo.hosts.yolov5.entry.train`: the zoo registered,
gamma log and gamma in the optimiser), best.pt validated by YOLOv5's own ``val.py`` with per-image statistics
(:mod:`.yolov5_valstats`).

How it differs from the Ultralytics host (the report names the host):

- **Numbers.** The stored metrics are YOLOv5's final validation of ``best.pt`` (``Validating best.pt...``),
  repeated as train.py makes it (:func:`.yolov5_valstats.collect`): twice the training batch, ``rect`` batches, the
  fused weights rounded to fp16, NMS IoU 0.60 (0.65 for COCO's own val2017 only). The recorded command
  (``attnyolo yolov5 val``) prints the same numbers on a GPU; on the CPU YOLOv5's ``val.py`` keeps the fused weights
  in fp32, so its last digits differ (measured at imgsz 64 after 1 epoch: 0.000458190 stored, 0.000458328 by
  ``val.py``). ``results.csv`` keeps YOLOv5's columns; the store's epoch rows rename
  the shared ones to Ultralytics' names (``epoch`` 1-based, ``metrics/mAP50-95(B)``...) so the report's curves read
  both hosts. YOLOv5 logs no time per epoch: ``train_seconds`` is the wall time of the training call.
- **Not supported** (refused when the grid is read): the attention warm-up (``attention_recipe``) and
  ``freeze_epochs``, which are Ultralytics-trainer callbacks; resuming a killed run (its folder is cleared and the
  run starts again); per-epoch ``gamma_ema`` (YOLOv5's callbacks do not expose the EMA).
- **Seed.** YOLOv5's ``--seed`` (``init_seeds(seed + 1, deterministic=True)``): same seed, same data order for every
  variant, as on Ultralytics.
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from attnyolo.data.check import check_data
from attnyolo.experiments.run_hosts import yolov5_valstats
from attnyolo.experiments.run_hosts.csv_rows import read_csv
from attnyolo.finetune import load_base
from attnyolo.graph.layers import is_yolov5_original
from attnyolo.graph.yaml_io import load
from attnyolo.hosts.base import HostFormatError, PathLike, TrainedRun
from attnyolo.hosts.yolov5 import entry
from attnyolo.hosts.yolov5.errors import YOLOv5HostError
from attnyolo.hosts.yolov5.host import YOLOv5Host
from attnyolo.hosts.yolov5.layers import register
from attnyolo.hosts.yolov5.source import CLONE

REFUSED = {
    "data": "give the data YAML as data: / --data",
    "cfg": "the model is the grid's base with each variant's attention inserted",
    "weights": "give the base checkpoint as weights: / --weights",
    "resume": "re-run the same ablate command: finished runs are kept",
    "evolve": "hyper-parameter evolution is not an ablation",
}
"""YOLOv5 ``train.py`` options a grid sets itself or cannot use (the seed, project and name: the grid's)."""

EPOCH_COLUMNS = {
    "metrics/precision": "metrics/precision(B)",
    "metrics/recall": "metrics/recall(B)",
    "metrics/mAP_0.5": "metrics/mAP50(B)",
    "metrics/mAP_0.5:0.95": "metrics/mAP50-95(B)",
}
"""YOLOv5's ``results.csv`` columns -> Ultralytics' names of the same numbers (the report's curves)."""


def epoch_rows(rows: list[dict]) -> list[dict]:
    """YOLOv5's ``results.csv`` rows with Ultralytics' epoch count (1-based) and metric names (see
    :data:`EPOCH_COLUMNS`)."""
    out = []
    for row in rows:
        row = {EPOCH_COLUMNS.get(k, k): v for k, v in row.items()}
        if isinstance(row.get("epoch"), int):
            row["epoch"] += 1  # YOLOv5 counts from 0, Ultralytics (and the report) from 1
        out.append(row)
    return out


class YOLOv5GridHost(YOLOv5Host):
    """YOLOv5 v7.0 as the grid runner's host (:class:`attnyolo.hosts.base.GridHost`)."""

    def _code(self):
        return register(self.yolov5)  # the zoo in its models.yolo, its classes loadable

    def load_base(self, weights: PathLike | None, model: Any, *, trust: bool = False) -> Any:
        self._code()
        if weights is None and not is_yolov5_original(load(model)):
            raise HostFormatError(
                f"{model}: an Ultralytics-8 model YAML (no anchors:); the yolov5 host trains original YOLOv5 v7.0 "
                "YAMLs (`attnyolo yolov5 yaml yolov5n -o yolov5n.yaml`), or leave out host: yolov5"
            )
        base = load_base(weights, model, trust=trust, user="ablate")
        if not is_yolov5_original(base.cfg):
            raise HostFormatError(
                f"{base.name}: an Ultralytics-8 checkpoint; the yolov5 host trains original YOLOv5 v7.0 checkpoints "
                "(yolov5s.pt, `attnyolo yolov5 init`), or leave out host: yolov5"
            )
        return base

    def check_recipe(self, recipe: Mapping[str, Any]) -> None:
        opt = self._code().module("train").parse_opt(True)
        for key in recipe:
            if key in REFUSED:
                raise YOLOv5HostError(f"recipe argument {key}= cannot be set in a grid: {REFUSED[key]}")
            if not hasattr(opt, key):
                raise YOLOv5HostError(
                    f"recipe argument {key}= is not a YOLOv5 train.py option (host yolov5); known: "
                    f"{', '.join(sorted(k for k in vars(opt) if k not in REFUSED))}"
                )

    def save_start(self, model: nn.Module, path: PathLike, data: PathLike, meta: Mapping[str, Any]) -> Path:
        return self.save_checkpoint(model, path, {**meta, "data": str(data)})

    def resumable(self, last: Path) -> int | None:
        return None  # YOLOv5's --resume reads its own opt.yaml; a killed run starts again

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
        if resume_from is not None or schedule.get("freeze_epochs") or schedule.get("recipe") is not None:
            raise YOLOv5HostError("the yolov5 host cannot resume a run, freeze epochs or apply an attention_recipe")
        epochs = int(recipe.get("epochs", self._code().module("train").parse_opt(True).epochs))
        final: list = []
        callbacks = {"on_train_end": lambda last, best, epoch, results: final.append(results)}
        if on_epoch is not None:
            callbacks["on_fit_epoch_end"] = lambda vals, epoch, *a: on_epoch(name, int(epoch) + 1, epochs)
        t0 = time.perf_counter()
        save_dir = entry.train(
            weights=start_pt,
            data=data,
            yolov5=self.yolov5,
            callbacks=callbacks,
            seed=seed,
            project=str(project),
            name=name,
            exist_ok=True,
            **recipe,
        )
        seconds = time.perf_counter() - t0
        opt = yaml.safe_load((save_dir / "opt.yaml").read_text())
        imgsz = int(opt["imgsz"])
        # YOLOv5's own final validation of best.pt (train.py: "Validating best.pt..."), as val.run arguments
        settings = {
            "batch_size": int(opt["batch_size"]) * 2,
            "half": True,  # train.py validates best.pt in half precision (val.run keeps fp32 on the CPU)
            "single_cls": bool(opt.get("single_cls", False)),
            "device": str(opt.get("device", "")),
            "workers": int(opt.get("workers", 8)) * 2,  # train.py's validation loader (no effect on a number)
        }
        return TrainedRun(
            save_dir=Path(save_dir),
            train_args=opt,
            imgsz=imgsz,
            val_settings=settings,
            final_map50_95=float(final[-1][3]) if final else None,
            epochs=epoch_rows(read_csv(save_dir / "results.csv")),
            seconds=seconds,
        )

    def per_image_stats(
        self, best: Path, data: PathLike, imgsz: int, settings: Mapping[str, Any]
    ) -> tuple[dict, dict[str, Any]]:
        code = self._code()
        names = dict(check_data(data)["names"])
        stats, results = yolov5_valstats.collect(code, best, data, names, imgsz=imgsz, **settings)
        mp, mr, map50, map_ = (float(v) for v in results[0][:4])
        per_class = yolov5_valstats.per_class_ap(code, stats)
        return stats, {"precision": mp, "recall": mr, "mAP50": map50, "mAP50-95": map_, "per_class": per_class}

    def load_trained(self, best: Path) -> nn.Module:
        ckpt = self.load_checkpoint(best)
        return (ckpt.get("ema") or ckpt["model"]).float().eval()

    def reproduce_command(self, best: PathLike, data: PathLike, imgsz: int, settings: Mapping[str, Any]) -> str:
        args = [f"--weights {best}", f"--data {data}"]
        if self.yolov5 is not None:
            args.append(f"--yolov5 {self.yolov5}")
        args += [f"imgsz={imgsz}", f"batch_size={settings['batch_size']}", f"half={str(settings['half']).lower()}"]
        if settings.get("single_cls"):
            args.append("single_cls=true")
        if settings.get("device"):
            args.append(f"device={settings['device']}")
        return "attnyolo yolov5 val " + " ".join(args)

    def versions(self) -> dict[str, str]:
        code = self._code()
        if code.kind == CLONE:
            return {"yolov5": f"v7.0 clone at {code.root}"}
        return {"yolov5": importlib.metadata.version("yolov5")}
