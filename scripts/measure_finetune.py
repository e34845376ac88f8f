"""Measure fine-tune recipes and gamma's optimiser settings on the embedded data (the numbers behind the defaults).

Two questions (issue 13):

1. Which recipe keeps the plain control (the base model trained on, nothing inserted) at or above the base's own
   val mAP? Candidates: Ultralytics' defaults (``optimizer=auto``: AdamW lr 0.0014 for 3 classes, 3 warm-up epochs,
   mosaic), and gentler ones (lower lr, no warm-up, no mosaic).
2. What does weight decay on the identity-start gamma do, and a learning rate of its own? Same recipe, one
   attention in the neck, gamma (a) in Ultralytics' decayed weight group, (b) in its own group without decay,
   (c) without decay and lr x 10.

Each run prints val mAP50-95 after every epoch and, for (2), gamma per inserted layer. Usage::

    python scripts/measure_finetune.py --base attnyolo/data/base_yolov8n_bccd.safetensors --epochs 3
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import attnyolo  # noqa: F401  (offline switches first)
from attnyolo.data import default_dataset

RECIPES = {
    "ultralytics-default": {},
    "adamw-1e-4-nowarmup-nomosaic": {"optimizer": "AdamW", "lr0": 1e-4, "warmup_epochs": 0, "mosaic": 0.0},
    "sgd-1e-3-nowarmup-nomosaic": {"optimizer": "SGD", "lr0": 1e-3, "warmup_epochs": 0, "mosaic": 0.0},
    # nbs=16: one optimiser step per batch of 16 (Ultralytics accumulates to 64 by default: 3 steps per epoch here)
    "adamw-5e-4-nbs16-nowarmup-nomosaic": {
        "optimizer": "AdamW",
        "lr0": 5e-4,
        "nbs": 16,
        "warmup_epochs": 0,
        "mosaic": 0.0,
    },
}
GAMMA_SETTINGS = {
    "gamma-decayed": None,  # Ultralytics' default: gamma among the decayed weights
    "gamma-no-decay": {"weight_decay": 0.0, "lr_scale": 1.0},
    "gamma-no-decay-lr10": {"weight_decay": 0.0, "lr_scale": 10.0},
}


def _start_checkpoint(model, path: Path) -> Path:
    import torch

    torch.save({"model": model.eval(), "train_args": {"task": "detect"}}, path)
    return path


def run(base: Path, name: str, recipe: dict, out: Path, common: dict, attention: str | None, gamma: dict | None):
    from ultralytics import YOLO

    from attnyolo.checkpoints import load_safetensors_model
    from attnyolo.finetune import GAMMA_CSV, add_gamma_logging, add_gamma_optimiser, prepare

    data = default_dataset()
    model = prepare(base, attention, "neck", data).model if attention else load_safetensors_model(base).float()
    start = _start_checkpoint(model, out / f".{name}-start.pt")
    yolo = YOLO(str(start))
    add_gamma_logging(yolo)
    if gamma is not None:
        add_gamma_optimiser(yolo, **gamma)
    t0 = time.perf_counter()
    yolo.train(data=str(data), project=str(out), name=name, exist_ok=True, **common, **recipe)
    seconds = time.perf_counter() - t0
    run_dir = Path(yolo.trainer.save_dir)
    with open(run_dir / "results.csv", newline="") as f:
        epochs = [float(r["metrics/mAP50-95(B)"]) for r in csv.DictReader(f, skipinitialspace=True)]
    gammas: dict[str, list[float]] = {}
    if (run_dir / GAMMA_CSV).is_file():
        with open(run_dir / GAMMA_CSV, newline="") as f:
            for r in csv.DictReader(f):
                gammas.setdefault(r["layer"], []).append(float(r["gamma"]))
    return {"name": name, "map50_95_per_epoch": epochs, "gamma_per_layer": gammas, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--out", type=Path, default=Path("runs/measure_finetune"))
    parser.add_argument("--attention", default="cbam")
    parser.add_argument("--gamma-recipe", default="adamw-1e-4-nowarmup-nomosaic")
    parser.add_argument("--only", default="", help="comma-separated run names to do (default: all)")
    args = parser.parse_args()
    from attnyolo.checkpoints import load_safetensors_model
    from attnyolo.data.base_checkpoint import validate

    args.out.mkdir(parents=True, exist_ok=True)
    common = {"epochs": args.epochs, "imgsz": args.imgsz, "batch": 16, "workers": 0, "seed": 0, "plots": False}
    base_map = validate(load_safetensors_model(args.base), imgsz=args.imgsz)["map50_95"]
    print(f"base val mAP50-95 at imgsz {args.imgsz}: {base_map:.4f}", flush=True)
    only = {s for s in args.only.split(",") if s}
    results = {"base_map50_95": base_map, "runs": []}
    todo = [(n, r, None, None) for n, r in RECIPES.items()]
    todo += [(n, RECIPES[args.gamma_recipe], args.attention, g) for n, g in GAMMA_SETTINGS.items()]
    for name, recipe, attention, gamma in todo:
        if only and name not in only:
            continue
        res = run(args.base, name, recipe, args.out, common, attention, gamma)
        results["runs"].append(res)
        print(json.dumps(res), flush=True)
        (args.out / "measurements.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
