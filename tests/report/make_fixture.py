"""Write the small fixture grid the report tests read: ``python tests/report/make_fixture.py``.

A results database of the current schema (through the store's own API) for a baseline and three variants
(se and cbam in the neck, se in the backbone) x 2 seeds, with synthetic but validator-shaped per-image statistics
(20 images, 3 classes; each variant finds targets with another probability), per-epoch rows and γ logs.
Deterministic (fixed RNG), about 100 KB.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

import attnyolo  # noqa: F401
from attnyolo.experiments import valstats
from attnyolo.experiments.store import ResultsStore

FOLDER = Path(__file__).parent / "fixtures" / "grid"
NAMES = ["RBC", "WBC", "Platelets"]
VARIANTS = [  # label, attention, placement, find probability, params, gflops, latency ratio
    ("baseline", None, None, 0.60, 3_011_433, 8.19, 1.0),
    ("se@neck", "se", "neck", 0.62, 3_016_689, 8.20, 1.06),
    ("cbam@neck", "cbam", "neck", 0.75, 3_017_079, 8.23, 1.21),
    ("se@backbone", "se", "backbone", 0.50, 3_021_000, 8.21, 1.09),
]


def per_image_stats(rng: np.random.Generator, hit: float, n_img: int = 20) -> dict[str, np.ndarray]:
    tp, conf, pred_cls, pred_img, target_cls, target_img = [], [], [], [], [], []
    for i in range(n_img):
        for c in range(3):
            n_t = int(rng.integers(1, 5))
            target_cls += [c] * n_t
            target_img += [i] * n_t
            for _ in range(n_t):
                if rng.random() < hit:
                    tp.append(np.arange(10) < int(rng.integers(1, 11)))
                    conf.append(rng.uniform(0.3, 1.0))
                    pred_cls.append(c)
                    pred_img.append(i)
        for _ in range(3):
            tp.append(np.zeros(10, bool))
            conf.append(rng.uniform(0.0, 0.8))
            pred_cls.append(int(rng.integers(3)))
            pred_img.append(i)
    return {
        "tp": np.array(tp, bool),
        "conf": np.array(conf, np.float32),
        "pred_cls": np.array(pred_cls, np.int32),
        "pred_img": np.array(pred_img, np.int32),
        "target_cls": np.array(target_cls, np.int32),
        "target_img": np.array(target_img, np.int32),
        "images": np.array([f"img{i:03d}.jpg" for i in range(n_img)]),
        "names": np.array(NAMES),
    }


def main() -> None:
    from attnyolo.report.stats import map_ultralytics

    shutil.rmtree(FOLDER, ignore_errors=True)
    rng = np.random.default_rng(2026)
    config = {
        "data": "embedded BCCD (fixture)",
        "weights": "base_yolov8n_bccd.safetensors",
        "recipe": {"epochs": 3, "imgsz": 320, "batch": 16, "workers": 0},
        "seeds": [0, 1],
        "variants": [{"attention": a, "where": w} for _, a, w, *_ in VARIANTS[1:]],
    }
    machine = {"cpu": "fixture", "cores": 2, "gpu": None, "os": "Linux"}
    versions = {"attnyolo": "fixture", "torch": "2.14.1", "ultralytics": "8.4", "python": "3.12"}
    store = ResultsStore.create(FOLDER, config, machine, versions, None)
    runs = [
        {
            "run_id": f"{v}-s{s}",
            "variant": v,
            "attention": a,
            "placement": w,
            "hparams": {},
            "seed": s,
            "is_baseline": a is None,
        }
        for v, a, w, *_ in VARIANTS
        for s in (0, 1)
    ]
    store.add_runs(runs)
    for v, a, w, hit, params, gflops, ratio in VARIANTS:
        for s in (0, 1):
            rid = f"{v}-s{s}"
            stats = per_image_stats(rng, hit)
            rel = f"runs/{rid}/val_stats.npz"
            valstats.save(FOLDER / rel, stats)
            map50, map50_95, per_class, classes = map_ultralytics(stats)
            epochs = [
                {
                    "epoch": e,
                    "metrics/mAP50(B)": map50 * (0.8 + 0.1 * e),
                    "metrics/mAP50-95(B)": map50_95 * (0.8 + 0.1 * e),
                }
                for e in (1, 2, 3)
            ]
            layers = [16, 19, 22] if w == "neck" else [2, 4]
            gamma = (
                [
                    {
                        "epoch": e,
                        "layer": layer,
                        "attention": a,
                        "gamma": 0.0 if e == 0 else float(rng.normal(0.05 * e, 0.02)),
                        "gamma_ema": None,
                    }
                    for e in (0, 1, 2, 3)
                    for layer in layers
                ]
                if a
                else []
            )
            store.mark_running(rid)
            store.mark_done(
                rid,
                {
                    "params": params,
                    "gflops": gflops,
                    "latency_ms": 20.0 * ratio,
                    "latency_ratio": ratio,
                    "map50": map50,
                    "map50_95": map50_95,
                    "precision": 0.7,
                    "recall": hit,
                    "per_class_ap": {NAMES[int(c)]: float(ap) for c, ap in zip(classes, per_class, strict=True)},
                    "epochs": epochs,
                    "train_seconds": 40.0,
                    "run_dir": f"runs/{rid}",
                    "val_stats": rel,
                    "gamma": gamma,
                    "versions": versions,
                    "git_rev": None,
                    "config": {**config, "seed": s, "run_id": rid},
                },
            )
    store.add_wall_seconds(321.0, finished=True)
    store.close()


if __name__ == "__main__":
    main()
