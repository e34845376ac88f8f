"""Train the base checkpoint shipped in the package: YOLOv8n from scratch on the embedded BCCD data.

Recipe (everything else is Ultralytics 8.4's default): ``yolov8n.yaml`` (nc=3), no pretrained weights (none
exist offline), imgsz 320, batch 16, 40 epochs, seed 0, ``deterministic=True``, ``workers=0``, optimiser
``auto`` (Ultralytics picks AdamW, lr0 0.001429 for 3 classes, below 10,000 iterations), mosaic closed for the
last 10 epochs. The best epoch (Ultralytics' fitness) is kept, stored as fp16 safetensors with its
architecture YAML in the metadata (:func:`attnyolo.checkpoints.save_safetensors`), then loaded back through
:func:`attnyolo.checkpoints.load_safetensors_model` and validated on the val split at imgsz 320, batch 16.

Result of this recipe (recorded in :data:`attnyolo.data.base_checkpoint.RECORDED`, checked by
``tests/data/test_base_checkpoint.py`` within 0.002):
val mAP50 0.6885, mAP50-95 0.4112 (best epoch: 40; the validator at imgsz 320, batch 16, rectangular batches, on
the fp16 file loaded back). From scratch, learning starts around epoch 6. Wall time: 3,277 s on a shared 2-core
machine under heavy load (about 784 s for 40 epochs on an idle one), with ``OMP_NUM_THREADS=1``.

Usage::

    python scripts/train_base.py                      # train, then export and validate
    python scripts/train_base.py --from-run RUN_DIR   # export and validate an earlier run's best.pt
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import attnyolo  # noqa: F401  (sets Ultralytics' offline switches before it is imported)
from attnyolo.checkpoints import load_checkpoint, save_safetensors
from attnyolo.data import default_dataset
from attnyolo.data.base_checkpoint import BASE_PATH, validate_base

RECIPE = {
    "imgsz": 320,
    "batch": 16,
    "epochs": 40,
    "seed": 0,
    "deterministic": True,
    "workers": 0,
    "pretrained": False,
    "device": "cpu",
    "plots": False,
}


def train(project: Path, stop_after: int | None = None) -> Path:
    """Train the base with :data:`RECIPE`; returns the run folder.

    ``stop_after=N`` ends the run after epoch N while keeping the 40-epoch schedule (learning rate, mosaic), so a
    shorter run is the same run cut short, not another recipe.
    """
    from ultralytics import YOLO

    yolo = YOLO("yolov8n.yaml")
    if stop_after is not None:

        def stop(trainer) -> None:
            trainer.stop |= trainer.epoch + 1 >= stop_after

        yolo.add_callback("on_fit_epoch_end", stop)
    t0 = time.perf_counter()
    yolo.train(data=str(default_dataset()), project=str(project.resolve()), name="base", exist_ok=True, **RECIPE)
    print(f"trained in {time.perf_counter() - t0:.0f} s")
    return Path(yolo.trainer.save_dir)


def export(run_dir: Path, out: Path) -> Path:
    """Store the run's best model (EMA weights, as Ultralytics saves them) as fp16 safetensors."""
    ckpt = load_checkpoint(run_dir / "weights" / "best.pt")
    model = ckpt.get("ema") or ckpt["model"]
    return save_safetensors(model, out, half=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("runs/base"), help="where Ultralytics writes the run")
    parser.add_argument("--from-run", type=Path, default=None, help="skip training: export this run's best.pt")
    parser.add_argument("--out", type=Path, default=BASE_PATH, help="destination .safetensors")
    parser.add_argument("--stop-after", type=int, default=None, help="end after this epoch (schedule unchanged)")
    args = parser.parse_args()
    run_dir = args.from_run or train(args.project, args.stop_after)
    path = export(run_dir, args.out)
    metrics = validate_base(path)
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB")
    print(f"val mAP50 {metrics['map50']:.4f}  mAP50-95 {metrics['map50_95']:.4f}")


if __name__ == "__main__":
    main()
