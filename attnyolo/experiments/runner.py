"""One run of a grid: build the start model, train it with Ultralytics, validate best.pt, measure its costs.

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

Training is Ultralytics' own (``YOLO(start.pt).train``) with the run's ``seed`` (same seed, same data order for
every variant), into ``GRID_DIR/runs/<run_id>``, with attnyolo's callbacks of every run
(:func:`attnyolo.finetune.add_run_callbacks`: gamma log, gamma group, start check, ``weights/start.pt``, transfer
report, the grid's ``freeze_epochs``). A run folder with a resumable ``weights/last.pt`` (killed mid-training)
continues from it (``resume=True``, the temporary start file of the killed attempt removed); any other leftover
folder is cleared and the run starts again. ``train_seconds`` adds up the attempts (:func:`train_seconds`).

After training, best.pt is validated (the stored metrics and ``val_stats.npz``), its costs are measured, and for a
run with attention its engagement (:func:`best_engagement`: ``r = ‖out − in‖ / ‖in‖`` of every attention layer on the
data's validation images, the images the statistics use) is measured and timed; the baseline stores none.
"""

from __future__ import annotations

import csv
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
import yaml
from ultralytics import YOLO

from attnyolo._version import __version__
from attnyolo.checkpoints import save_ultralytics_checkpoint
from attnyolo.data.check import check_data
from attnyolo.experiments import costs, valstats
from attnyolo.experiments.engagement import engagement
from attnyolo.experiments.grid import Grid, Variant, attention_recipe, resolve, where_arg
from attnyolo.finetune import (
    GAMMA_COLUMNS,
    GAMMA_CSV,
    Base,
    Start,
    add_run_callbacks,
    build_start,
    class_change,
    load_base,
)
from attnyolo.graph import build
from attnyolo.graph.attention_layers import attention_layers

VAL_STATS = "val_stats.npz"
RUNS = "runs"
ATTEMPTS = "attnyolo_attempts.txt"  # the first epoch of each resumed attempt of a run (train_seconds)
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


def grid_base(grid: Grid) -> Base:
    """The grid's base, loaded once: its checkpoint (``weights``) or its model YAML (``model``)."""
    return load_base(grid.weights, grid.model, trust=grid.trust, user="ablate")


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
    )


def save_start(model: torch.nn.Module, path: Path, data: str, meta: Mapping) -> Path:
    """The run's start model as the Ultralytics checkpoint ``YOLO(path)`` loads (as :func:`attnyolo.finetune`)."""
    return save_ultralytics_checkpoint(model, path, meta, data=data)


def configured_yolo(
    start_pt: Path,
    start: Start,
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


# ------------------------------------------------------------------------------------------------------ the run


def _resumable(last: Path) -> int | None:
    """The epoch (0-based, Ultralytics' count) that ``last.pt`` finished, if the run can continue from it."""
    if not last.is_file():
        return None
    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=False)  # this run's own file, written by us
    except Exception:
        return None
    epoch = int(ckpt.get("epoch", -1))
    return epoch if epoch >= 0 and ckpt.get("optimizer") is not None else None


def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k.strip(): _number(v) for k, v in row.items()} for row in rows]


def _number(v: str | None) -> Any:
    if v is None:
        return None
    v = v.strip()
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f


def start_file(runs_dir: Path, run_id: str) -> Path:
    """The temporary start checkpoint of a run (``YOLO`` loads it; the run keeps its copy as ``weights/start.pt``)."""
    return runs_dir / f".{run_id}-start.pt"


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


def _attempt_starts(run_dir: Path) -> list[int]:
    path = run_dir / ATTEMPTS
    return [int(v) for v in path.read_text().split()] if path.is_file() else []


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
    t0 = time.perf_counter()
    try:
        finished = _resumable(last)
        if finished is not None:  # killed mid-training: continue from the last finished epoch
            start_pt.unlink(missing_ok=True)  # the killed attempt's temporary start file
            # where this attempt's clock starts (results.csv's epochs are 1-based): for train_seconds
            with open(run_dir / ATTEMPTS, "a") as f:
                f.write(f"{finished + 2}\n")
            yolo = configured_yolo(last, start, t.run_id, on_epoch, resumed=True, **schedule)
            yolo.train(resume=True)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
            save_start(start.model, start_pt, grid.data, {"base": grid.weights or grid.model, "run_id": t.run_id})
            yolo = configured_yolo(start_pt, start, t.run_id, on_epoch, **schedule)
            yolo.train(data=grid.data, seed=t.seed, project=str(runs_dir), name=t.run_id, exist_ok=True, **grid.recipe)
    finally:
        start_pt.unlink(missing_ok=True)
    seconds = time.perf_counter() - t0
    save_dir = Path(yolo.trainer.save_dir)
    best = save_dir / "weights" / "best.pt"
    if not best.is_file():
        raise RuntimeError(f"{t.run_id}: training ended without {best}")

    train_args = yaml.safe_load((save_dir / "args.yaml").read_text())
    imgsz = int(train_args.get("imgsz", 640))
    # the trainer's final validation of best.pt, repeated with its settings: the stored numbers are Ultralytics'
    # own, and one documented command prints them again (see valstats.trainer_val_settings)
    val_settings = valstats.trainer_val_settings(yolo.trainer)
    stats, metrics = valstats.collect_with_metrics(best, grid.data, imgsz, **val_settings)
    valstats.save(save_dir / VAL_STATS, stats)

    net = YOLO(str(best)).model.float().eval()
    layers, layer_seconds = best_engagement(net, grid.data, imgsz)
    reference = build(start.base_cfg, nc=nc).float().eval()
    latency = costs.interleaved_latency(net, reference, imgsz)
    flops = costs.count_flops(net, torch.zeros(1, 3, imgsz, imgsz))
    box = metrics.box
    per_class = {names[int(c)]: float(box.ap[i].mean()) for i, c in enumerate(box.ap_class_index)}
    epochs = _read_csv(save_dir / "results.csv")
    gamma = [{c: r.get(c) for c in GAMMA_COLUMNS} for r in _read_csv(save_dir / GAMMA_CSV)]
    seconds = (
        train_seconds(epochs, _attempt_starts(save_dir)) or seconds
    )  # Ultralytics' own clock, summed over a kill and its resumes
    rel = os.path.relpath(save_dir, t.grid_dir)
    return {
        "params": costs.count_params(net),
        "gflops": flops.gflops,
        "latency_ms": latency.ms,
        "latency_ratio": latency.ratio,
        "map50": float(box.map50),
        "map50_95": float(box.map),
        "precision": float(box.mp),
        "recall": float(box.mr),
        "per_class_ap": per_class,
        "epochs": epochs,
        "train_seconds": seconds,
        "run_dir": rel,
        "val_stats": os.path.join(rel, VAL_STATS),
        "gamma": gamma,
        "engagement": layers,
        "engagement_seconds": layer_seconds,
        "versions": versions(),
        "git_rev": git_rev(),
        "config": {
            **grid.config(),
            "variant": variant.as_dict(),
            "seed": t.seed,
            "run_id": t.run_id,
            "train_args": train_args,
            "uncounted_ops": dict(flops.uncounted),
            "latency": asdict(latency),
            "val": {
                **val_settings,
                "command": valstats.reproduce_command(
                    os.path.join(rel, "weights", "best.pt"), grid.data, imgsz, val_settings
                ),
                "trainer_final_map50_95": valstats.trainer_final_map(yolo.trainer),
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


def _add_epoch_callback(yolo: Any, run_id: str, on_epoch: Callable | None) -> None:
    if on_epoch is not None:
        yolo.add_callback("on_train_epoch_end", lambda tr: on_epoch(run_id, int(tr.epoch) + 1, int(tr.epochs)))
