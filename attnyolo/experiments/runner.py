"""One run of a grid: build the start model, train it with the grid's host, validate best.pt, measure its costs.

:func:`run_one` takes a plain dict (a :class:`RunTask`'s fields) and returns the result columns of the run's
row, so it runs the same way in the driver, in a local worker process or in a Ray task; it never touches the
database (the driver alone writes it).

Start model of each run: the same functions as :func:`attnyolo.finetune` (:func:`attnyolo.finetune.start.load_base`
and :func:`~attnyolo.finetune.start.build_start`), with the variant's edit and the run's seed, so the start is a
pure function of (grid, variant, seed) whatever the executor and the run order:

- ``weights`` (fine-tuning): the base checkpoint's architecture with the attention inserted, every base tensor
  transferred through the index map and the identity start (``gamma = 0``) by default; the **baseline** is the
  base architecture itself with the same checkpoint transferred, so it continues training from the same weights
  with the same recipe (the honest control). Only the head's class convolutions may be left behind (another
  class count); anything else left behind is an error. New tensors (the attention's own, the class convolutions
  of another class count) are drawn under the run's seed.
- ``model`` (from scratch): the baseline is built under the run's seed; a variant gets the baseline's initial
  tensors for every layer it shares with it, so the seed alone decides the shared start.

The runner talks to the grid's host (``host:``, :func:`attnyolo.experiments.run_hosts.grid_host`), never to a
detection codebase directly: Ultralytics 8 by default, the original YOLOv5 v7.0 with ``host: yolov5``. The host
builds the start model, writes it in its checkpoint format, trains it, validates best.pt and loads it back.

Training is the host's own (Ultralytics: ``YOLO(start.pt).train``; YOLOv5: its ``train.py``) with the run's ``seed``
(same seed, same data order for every variant), into ``GRID_DIR/runs/<run_id>``, with attnyolo's callbacks of every
run (Ultralytics: :func:`attnyolo.finetune.add_run_callbacks`: gamma log, gamma group, start check,
``weights/start.pt``, transfer report, the grid's ``freeze_epochs``; YOLOv5: gamma log and gamma in its optimiser,
:mod:`attnyolo.hosts.yolov5.entry`). A run folder with a resumable ``weights/last.pt`` (killed mid-training;
Ultralytics only) continues from it (``resume=True``, the temporary start file of the killed attempt removed); any
other leftover folder is cleared and the run starts again. ``train_seconds`` adds up the attempts
(:func:`train_seconds`).

After training, best.pt is validated as the host's trainer validated it at the end of training (the stored metrics
and ``val_stats.npz``, the same arrays on both hosts), its costs are measured, and for a
run with attention its engagement (:func:`best_engagement`: ``r = ‖out − in‖ / ‖in‖`` of every attention layer on the
data's validation images, the images the statistics use) is measured and timed; the baseline stores none.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import ultralytics

from attnyolo._version import __version__
from attnyolo.data.check import check_data
from attnyolo.experiments import costs, valstats
from attnyolo.experiments.engagement import engagement
from attnyolo.experiments.grid import Grid, Variant, attention_recipe, resolve, where_arg
from attnyolo.experiments.run_hosts import grid_host
from attnyolo.experiments.run_hosts.csv_rows import read_csv
from attnyolo.experiments.run_hosts.ultralytics import (  # noqa: F401  (the runner's names before it had hosts)
    ATTEMPTS,
    configured_yolo,
    train_seconds,
)
from attnyolo.experiments.run_hosts.ultralytics import resumable as _resumable  # noqa: F401
from attnyolo.finetune import GAMMA_COLUMNS, GAMMA_CSV, Base, Start, build_start, class_change
from attnyolo.graph.attention_layers import attention_layers
from attnyolo.hosts.base import GridHost

VAL_STATS = "val_stats.npz"
RUNS = "runs"
ENGAGEMENT_BATCH = 8
"""Validation images per engagement forward pass (same-shape images only; r is per image whatever the batch)."""


@dataclass(frozen=True)
class RunTask:
    """Everything one run needs, as plain data (picklable for worker processes and Ray)."""

    grid_dir: str
    run_id: str
    config: dict  # the grid's resolved config
    variant: dict
    seed: int
    threads: int | None = None


def versions() -> dict[str, str]:
    return {
        "attnyolo": __version__,
        "torch": torch.__version__,
        "ultralytics": ultralytics.__version__,
        "python": platform.python_version(),
    }


def git_rev() -> str | None:
    """The git revision of the attnyolo source tree, when it is a git checkout (else ``None``)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "os": platform.platform()}


# ---------------------------------------------------------------------------------------------------- start model


def host_of(grid: Grid) -> GridHost:
    """The host that builds, trains and validates the grid's runs (its ``host`` key)."""
    return grid_host(grid.host, grid.yolov5)


def grid_base(grid: Grid) -> Base:
    """The grid's base, loaded once: its checkpoint (``weights``) or its model YAML (``model``), by its host."""
    return host_of(grid).load_base(grid.weights, grid.model, trust=grid.trust)


def grid_class_change(grid: Grid) -> str | None:
    """One line when the grid's base checkpoint has another class count than its data (see
    :func:`attnyolo.finetune.class_change`), else ``None``."""
    if grid.weights is None:
        return None
    info = check_data(grid.data)
    return class_change(grid_base(grid), int(info["nc"]), dict(info["names"]))


def start_model(grid: Grid, variant: Variant, seed: int, nc: int, names: dict, base: Base | None = None) -> Start:
    """The model a run starts from: :func:`attnyolo.finetune.start.build_start` with the variant's edit, the
    data's classes and the run's seed (see the module docstring). ``base`` saves reading the grid's base again."""
    where, after = where_arg(variant.where)
    return build_start(
        base or grid_base(grid),
        variant.attention,
        where,
        after=after,
        hparams=variant.hparams,
        nc=nc,
        names=names,
        seed=seed,
        identity_start=grid.identity_start,
        load=variant.load,
        build_model=host_of(grid).build,
    )


def save_start(model: torch.nn.Module, path: Path, data: str, meta: Mapping) -> Path:
    """The run's start model as the Ultralytics checkpoint ``YOLO(path)`` loads (as :func:`attnyolo.finetune`)."""
    return grid_host().save_start(model, path, data, meta)


# ------------------------------------------------------------------------------------------------------ the run


def start_file(runs_dir: Path, run_id: str) -> Path:
    """The temporary start checkpoint of a run (``YOLO`` loads it; the run keeps its copy as ``weights/start.pt``)."""
    return runs_dir / f".{run_id}-start.pt"


def run_one(task: Mapping[str, Any], on_epoch: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Train, validate and measure one run; return its row's result columns (see :mod:`.store`).

    Args:
        task: a :class:`RunTask` as a dict.
        on_epoch: called ``(run_id, epoch, epochs)`` after each epoch (progress display; same process only).
    """
    t = RunTask(**task)
    if t.threads:
        torch.set_num_threads(int(t.threads))
    grid = resolve(t.config, check=False)
    host = host_of(grid)
    variant = Variant(**t.variant)
    info = check_data(grid.data)
    nc, names = int(info["nc"]), dict(info["names"])
    runs_dir = Path(t.grid_dir) / RUNS
    run_dir = runs_dir / t.run_id
    last = run_dir / "weights" / "last.pt"
    start = start_model(grid, variant, t.seed, nc, names)
    start_pt = start_file(runs_dir, t.run_id)

    # the control and every variant get the same schedule (frozen phase, attention warm-up)
    schedule = {
        "freeze_epochs": grid.freeze_epochs,
        "recipe": attention_recipe(grid),
        "epochs": grid.recipe.get("epochs"),
    }
    train = {"data": grid.data, "seed": t.seed, "project": runs_dir, "name": t.run_id, "recipe": grid.recipe}
    t0 = time.perf_counter()
    try:
        finished = host.resumable(last)
        if finished is not None:  # killed mid-training: continue from the last finished epoch
            start_pt.unlink(missing_ok=True)  # the killed attempt's temporary start file
            # where this attempt's clock starts (results.csv's epochs are 1-based): for train_seconds
            with open(run_dir / ATTEMPTS, "a") as f:
                f.write(f"{finished + 2}\n")
            trained = host.train_run(start, None, schedule=schedule, on_epoch=on_epoch, resume_from=last, **train)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
            host.save_start(start.model, start_pt, grid.data, {"base": grid.weights or grid.model, "run_id": t.run_id})
            trained = host.train_run(start, start_pt, schedule=schedule, on_epoch=on_epoch, **train)
    finally:
        start_pt.unlink(missing_ok=True)
    seconds = time.perf_counter() - t0
    save_dir, best, imgsz = trained.save_dir, trained.best, trained.imgsz
    if not best.is_file():
        raise RuntimeError(f"{t.run_id}: training ended without {best}")

    # the trainer's final validation of best.pt, repeated with its settings (the stored numbers are the host's own)
    val_settings = trained.val_settings
    stats, metrics = host.per_image_stats(best, grid.data, imgsz, val_settings)
    valstats.save(save_dir / VAL_STATS, stats)

    net = host.load_trained(best)
    layers, layer_seconds = best_engagement(net, grid.data, imgsz)
    reference = host.build(start.base_cfg, nc=nc).float().eval()
    latency = costs.interleaved_latency(net, reference, imgsz)
    flops = costs.count_flops(net, torch.zeros(1, 3, imgsz, imgsz))
    per_class = {names[c]: ap for c, ap in metrics["per_class"].items()}
    gamma = [{c: r.get(c) for c in GAMMA_COLUMNS} for r in read_csv(save_dir / GAMMA_CSV)]
    seconds = trained.seconds or seconds  # the host's own clock (summed over a kill and its resumes) when it has one
    rel = os.path.relpath(save_dir, t.grid_dir)
    return {
        "params": costs.count_params(net),
        "gflops": flops.gflops,
        "latency_ms": latency.ms,
        "latency_ratio": latency.ratio,
        "map50": metrics["mAP50"],
        "map50_95": metrics["mAP50-95"],
        "precision": metrics["precision"],
        "recall": metrics["recall"],
        "per_class_ap": per_class,
        "epochs": trained.epochs,
        "train_seconds": seconds,
        "run_dir": rel,
        "val_stats": os.path.join(rel, VAL_STATS),
        "gamma": gamma,
        "engagement": layers,
        "engagement_seconds": layer_seconds,
        "versions": {**versions(), **host.versions()},
        "git_rev": git_rev(),
        "config": {
            **grid.config(),
            "variant": variant.as_dict(),
            "seed": t.seed,
            "run_id": t.run_id,
            "train_args": trained.train_args,
            "uncounted_ops": dict(flops.uncounted),
            "latency": asdict(latency),
            "val": {
                **val_settings,
                "command": host.reproduce_command(
                    os.path.join(rel, "weights", "best.pt"), grid.data, imgsz, val_settings
                ),
                "trainer_final_map50_95": trained.final_map50_95,
            },
        },
    }


def best_engagement(net: torch.nn.Module, data: str, imgsz: int) -> tuple[list[dict] | None, float | None]:
    """Engagement ``r`` of every attention layer of ``net`` (best.pt's model) over the validation images of ``data``
    (the images ``val_stats.npz`` holds), as the store's rows, and the seconds it took; ``(None, None)`` for a model
    without attention (the baseline)."""
    if not attention_layers(net):
        return None, None
    t0 = time.perf_counter()
    measured = engagement(net, data, imgsz, batch=ENGAGEMENT_BATCH)
    seconds = time.perf_counter() - t0
    rows = [
        {"label": s.label, "attention": s.attention, "r_median": s.median, "r_max": s.max, "r_values": list(s.values)}
        for s in measured.values()
    ]
    return rows, seconds
