"""One run of a grid: build the start model, train it with Ultralytics, validate best.pt, measure its costs.

:func:`run_one` takes a plain dict (a :class:`RunTask`'s fields) and returns the result columns of the run's
row, so it runs the same way in the driver, in a local worker process or in a Ray task; it never touches the
database (the driver alone writes it).

Start model of each run:

- ``weights`` (fine-tuning): the base checkpoint's architecture with the attention inserted, every base tensor
  transferred through the index map and the identity start (``gamma = 0``) by default; the **baseline** is the
  base architecture itself with the same checkpoint transferred, so it continues training from the same weights
  with the same recipe (the honest control). Only the head's class convolutions may be left behind (another
  class count); anything else left behind is an error, as in :func:`attnyolo.finetune`.
- ``model`` (from scratch): the baseline is built under ``torch.manual_seed(seed)``; a variant gets the
  baseline's initial tensors for every layer it shares with it, so the seed alone decides the shared start.

Training is Ultralytics' own (``YOLO(start.pt).train``) with the run's ``seed`` (same seed, same data order for
every variant), into ``GRID_DIR/runs/<run_id>``, with attnyolo's gamma log and start check (the trainer must
start from the transferred tensors). A run folder with a resumable ``weights/last.pt`` (killed mid-training)
continues from it (``resume=True``); any other leftover folder is cleared and the run starts again.
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

from attnyolo.experiments.grid import Grid, Variant, check_variant, resolve

VAL_STATS = "val_stats.npz"
RUNS = "runs"


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
    import ultralytics

    import attnyolo

    return {
        "attnyolo": attnyolo.__version__,
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


@dataclass
class Start:
    """The start of a run: the model to train, the baseline architecture (for latency) and the transfer report."""

    model: torch.nn.Module
    base_cfg: dict
    report: Any  # TransferReport or None (from scratch)


def start_model(grid: Grid, variant: Variant, seed: int, nc: int, names: dict) -> Start:
    """The model a run starts from (see the module docstring)."""
    from attnyolo.graph import build, load
    from attnyolo.graph.layers import layers
    from attnyolo.weights import transfer

    if grid.weights is not None:
        from attnyolo.checkpoints import load_checkpoint
        from attnyolo.finetune import base_architecture, check_left_behind

        ckpt = load_checkpoint(grid.weights, trust=grid.trust)
        base_cfg, base_names = base_architecture(Path(grid.weights), ckpt, grid.trust)
        nc_base = base_cfg.get("nc", len(base_names or {}) or None)
        cfg, imap = (
            (dict(base_cfg), None) if variant.is_baseline else check_variant(base_cfg, variant, grid.identity_start)
        )
        cfg["nc"] = nc
        model = build(cfg, nc=nc)
        if variant.load == "keys":  # the positive control: Ultralytics' key matching (see load_base_by_keys)
            report = load_base_by_keys(model, ckpt, grid.weights)
        else:
            report = transfer(model, ckpt, imap)
            report.source = grid.weights
            check_left_behind(report, len(layers(base_cfg)) - 1, nc_base, nc)
    else:
        base_cfg = load(grid.model)
        torch.manual_seed(seed)
        base = build(dict(base_cfg, nc=nc), nc=nc)
        if variant.is_baseline:
            model, report = base, None
        else:
            cfg, imap = check_variant(base_cfg, variant, grid.identity_start)
            model = build(dict(cfg, nc=nc), nc=nc)
            if variant.load == "keys":
                load_base_by_keys(model, base, "the from-scratch base")
            else:
                transfer(model, base, imap)
            report = None
    model.names = dict(names)
    return Start(model=model, base_cfg=dict(base_cfg, nc=nc), report=report)


def load_base_by_keys(model: torch.nn.Module, base: Any, source: str) -> Any:
    """A ``load: keys`` variant (the positive control): the base loaded by Ultralytics' key matching, as
    ``yolo train model=EDITED.yaml pretrained=BASE.pt`` does; the report counts what it kept and left behind
    (nothing is refused: losing the shifted layers' weights is the point of this control)."""
    from attnyolo.key_matching import load_by_keys

    report = load_by_keys(model, base)
    report.source = source
    return report


def save_start(model: torch.nn.Module, path: Path, data: str, meta: Mapping) -> Path:
    """The run's start model as the Ultralytics checkpoint ``YOLO(path)`` loads (as :func:`attnyolo.finetune`)."""
    from attnyolo.checkpoints import save_ultralytics_checkpoint

    return save_ultralytics_checkpoint(model, path, meta, data=data)


def start_callbacks(model: torch.nn.Module, report: Any) -> dict[str, list[Callable]]:
    """attnyolo's callbacks of a run: start check (every tensor as built/transferred) and transfer report."""
    from attnyolo.finetune import report_writer, start_checker

    expected = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out: dict[str, list[Callable]] = {"on_pretrain_routine_end": [start_checker(expected)]}
    if report is not None:
        out["on_pretrain_routine_start"] = [report_writer(report)]
    return out


def configured_yolo(start_pt: Path, start: Start, run_id: str = "", on_epoch: Callable | None = None) -> Any:
    """``YOLO(start_pt)`` with attnyolo's callbacks: gamma log, start check, transfer report, progress.

    The callbacks travel with the trainer into a DDP launch (Ultralytics cloudpickles them with the model).
    """
    from ultralytics import YOLO

    from attnyolo.finetune import add_gamma_logging, add_gamma_optimiser

    yolo = YOLO(str(start_pt))
    add_gamma_logging(yolo)
    add_gamma_optimiser(yolo)  # gamma in its own group, as attnyolo.finetune trains it
    for event, fns in start_callbacks(start.model, start.report).items():
        for fn in fns:
            yolo.add_callback(event, fn)
    _add_epoch_callback(yolo, run_id, on_epoch)
    return yolo


# ------------------------------------------------------------------------------------------------------ the run


def _resumable(last: Path) -> bool:
    if not last.is_file():
        return False
    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=False)  # this run's own file, written by us
    except Exception:
        return False
    return int(ckpt.get("epoch", -1)) >= 0 and ckpt.get("optimizer") is not None


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


def run_one(task: Mapping[str, Any], on_epoch: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Train, validate and measure one run; return its row's result columns (see :mod:`.store`).

    Args:
        task: a :class:`RunTask` as a dict.
        on_epoch: called ``(run_id, epoch, epochs)`` after each epoch (progress display; same process only).
    """
    import yaml
    from ultralytics import YOLO

    from attnyolo.datasets import check_data
    from attnyolo.experiments import costs, valstats
    from attnyolo.finetune import GAMMA_CSV, add_gamma_logging, add_gamma_optimiser
    from attnyolo.graph import build

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

    t0 = time.perf_counter()
    if _resumable(last):  # killed mid-training: continue from the last finished epoch
        yolo = YOLO(str(last))
        add_gamma_logging(yolo)
        add_gamma_optimiser(yolo)  # the same optimiser groups as the run it continues
        _add_epoch_callback(yolo, t.run_id, on_epoch)
        yolo.train(resume=True)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        start_pt = save_start(
            start.model,
            runs_dir / f".{t.run_id}-start.pt",
            grid.data,
            {"base": grid.weights or grid.model, "run_id": t.run_id},
        )
        try:
            yolo = configured_yolo(start_pt, start, t.run_id, on_epoch)
            yolo.train(data=grid.data, seed=t.seed, project=str(runs_dir), name=t.run_id, exist_ok=True, **grid.recipe)
        finally:
            start_pt.unlink(missing_ok=True)
    train_seconds = time.perf_counter() - t0
    save_dir = Path(yolo.trainer.save_dir)
    best = save_dir / "weights" / "best.pt"
    if not best.is_file():
        raise RuntimeError(f"{t.run_id}: training ended without {best}")

    train_args = yaml.safe_load((save_dir / "args.yaml").read_text())
    imgsz = int(train_args.get("imgsz", 640))
    stats, metrics = valstats.collect_with_metrics(
        best, grid.data, imgsz, batch=int(train_args.get("batch", 16)), device=str(train_args.get("device") or "cpu")
    )
    valstats.save(save_dir / VAL_STATS, stats)

    net = YOLO(str(best)).model.float().eval()
    reference = build(start.base_cfg, nc=nc).float().eval()
    latency = costs.interleaved_latency(net, reference, imgsz)
    flops = costs.count_flops(net, torch.zeros(1, 3, imgsz, imgsz))
    box = metrics.box
    per_class = {names[int(c)]: float(box.ap[i].mean()) for i, c in enumerate(box.ap_class_index)}
    epochs = _read_csv(save_dir / "results.csv")
    gamma = [
        {
            "epoch": r["epoch"],
            "layer": r["layer"],
            "attention": r["attention"],
            "gamma": r["gamma"],
            "gamma_ema": r.get("gamma_ema"),
        }
        for r in _read_csv(save_dir / GAMMA_CSV)
    ]
    if epochs and isinstance(epochs[-1].get("time"), (int, float)):
        train_seconds = float(epochs[-1]["time"])  # Ultralytics' cumulative training time (spans a resume)
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
        "train_seconds": train_seconds,
        "run_dir": rel,
        "val_stats": os.path.join(rel, VAL_STATS),
        "gamma": gamma,
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
        },
    }


def _add_epoch_callback(yolo: Any, run_id: str, on_epoch: Callable | None) -> None:
    if on_epoch is not None:
        yolo.add_callback("on_train_epoch_end", lambda tr: on_epoch(run_id, int(tr.epoch) + 1, int(tr.epochs)))
