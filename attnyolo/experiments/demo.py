"""The main job behind ``make demo`` (``attnyolo demo``): does attention help this detector, and at what cost?

An ablation grid (:func:`attnyolo.experiments.ablate`) on the embedded data: the shipped base checkpoint
(:mod:`attnyolo.data.base_checkpoint`, a YOLOv8n trained on it) fine-tuned once as it is (the control, "baseline") and
once per attention variant (five in the neck, one in the backbone), each through the weight transfer with an identity
start, with one shared recipe and two seeds; then the report (:func:`attnyolo.report.write_report`): a verdict per
variant from a Holm-corrected paired bootstrap, the costs, and ``report.html``. The grid folder is an ordinary ablate
folder: running the same command again resumes it (finished runs are kept).

``quick=True`` is a first look in about two minutes: two neck variants and the baseline, one seed, one epoch.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attnyolo.errors import AttnYoloError
from attnyolo.experiments.executors import cores

DEMO_RECIPE: dict[str, Any] = {
    "epochs": 2,
    "imgsz": 320,
    "batch": 16,
    "workers": 0,
    "optimizer": "AdamW",
    "lr0": 1e-4,
    "warmup_epochs": 0,
    "mosaic": 0.0,
    "plots": False,
}
"""The shared fine-tune recipe (measured: README, "Fine-tune recipe"): AdamW at a small learning rate from the first
step (no warm-up towards Ultralytics' from-scratch rate, which shakes a trained base), no mosaic, Ultralytics' usual
gradient accumulation (nbs=64), and 2 epochs at the base's image size, so that the 16 runs (8 variants x 2 seeds)
stay short on 2 CPU cores (README: the wall time measured)."""

DEMO_ATTENTION_RECIPE: dict[str, Any] = {
    "warmup_epochs": 1,
    "new_lr_scale": 100,
    "gamma_lr_scale": 300,
    "new_max_lr": 0.01,
    "gamma_max_lr": 0.03,
}
"""The attention warm-up (:class:`attnyolo.finetune.recipe.Recipe`, measured in docs/results/finetune_recipes.md):
epoch 1 trains only what is new to the base (the attention at lr0 x 100, γ at lr0 x 300) with a step per batch, the
transferred tensors frozen; epoch 2 is the joint fine-tune. Without it the attention is never used at this budget
(r <= 0.003); with it every measured variant engages (median r >= 0.05; SimAM, whose only tensor is γ, needs γ at
x 300, not x 100; the limits only act on a larger lr0 than the demo's). The control runs the same schedule (its
warm-up trains nothing). The same as ``default_recipe(epochs=2)``, written out here: the demo's grid.yaml names
it, and its quick 1-epoch run keeps the warm-up too (a first look at an attention that engages)."""

DEMO_VARIANTS: tuple[tuple[str, str], ...] = (
    ("se", "neck"),
    ("eca", "neck"),
    ("cbam", "neck"),
    ("coord", "neck"),
    ("simam", "neck"),
    ("cbam", "backbone"),
)
POSITIVE_CONTROL: dict[str, Any] = {"attention": "cbam", "where": "backbone", "load": "keys"}
"""CBAM in the backbone loaded the way hand-made community edits are (Ultralytics' key matching, as ``yolo train
model=EDITED.yaml pretrained=BASE.pt``: 91 of the base's 355 tensors kept): a real difference the verdicts must
detect ("worse"), next to the same insertion through attnyolo's transfer (``cbam@backbone``, all 355 kept)."""
QUICK_VARIANTS: tuple[tuple[str, str], ...] = (("se", "neck"), ("cbam", "neck"))
DEMO_SEEDS = (0, 1)
MAX_DEMO_WORKERS = 4


def demo_workers() -> int:
    """Runs at once by default: one per core, at most :data:`MAX_DEMO_WORKERS`, each with the cores' share of torch
    threads. Measured on 2 cores (README, "The demo's wall time"): two 1-thread runs side by side train an epoch in
    24.5 s each, one 2-thread run in about 22 s, so two at once nearly double the throughput of one at a time (a
    small model at batch 16 does not keep two threads busy)."""
    return max(1, min(MAX_DEMO_WORKERS, cores()))


class DemoError(AttnYoloError):
    """Bad demo arguments."""


def demo_grid(
    data: str | Path | None = None, *, quick: bool = False, seeds: int | None = None, **yolo_args: Any
) -> dict[str, Any]:
    """The demo's grid (the content of its ``grid.yaml``), with ``yolo_args`` overriding the recipe."""
    from attnyolo.data import default_dataset
    from attnyolo.data.base_checkpoint import base_path

    if "data" in yolo_args:
        raise DemoError("give the data once: --data PATH or data=PATH")
    recipe = dict(DEMO_RECIPE)
    if quick:
        recipe["epochs"] = 1
    recipe.update(yolo_args)
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise DemoError(f"seeds must be a positive count, got {seeds!r}")
    n_seeds = seeds or (1 if quick else len(DEMO_SEEDS))
    return {
        "data": str(Path(data) if data is not None else default_dataset()),
        "weights": str(base_path()),
        "recipe": recipe,
        "seeds": list(range(n_seeds)),
        "variants": [{"attention": a, "where": w} for a, w in (QUICK_VARIANTS if quick else DEMO_VARIANTS)]
        + ([] if quick else [dict(POSITIVE_CONTROL)]),
        "attention_recipe": dict(DEMO_ATTENTION_RECIPE),
    }


def data_label(data: str | Path | None) -> str:
    """What the table's title calls the data: the embedded set, or the YAML the user gave."""
    return "embedded BCCD, val split" if data is None else f"{data}, val split"


def demo_command(
    data: str | Path | None,
    quick: bool,
    out: str | Path,
    seeds: int | None,
    yolo_args: Mapping[str, Any],
    workers: int | None = None,
) -> str:
    """The ``attnyolo demo`` command line that continues the demo grid in ``out`` (printed after a Ctrl-C)."""
    argv = ["attnyolo", "demo", *(["--quick"] if quick else []), *(["--data", str(data)] if data is not None else [])]
    argv += ["--out", str(out), *(["--seeds", str(seeds)] if seeds is not None else [])]
    argv += ["--workers", str(workers)] if workers is not None else []
    return shlex.join(argv + [f"{k}={v}" for k, v in yolo_args.items()])


def run_demo(
    data: str | Path | None = None,
    *,
    quick: bool = False,
    out: str | Path | None = None,
    seeds: int | None = None,
    resamples: int = 10_000,
    workers: int | None = None,
    console: Any = None,
    **yolo_args: Any,
):
    """Run (or resume) the demo grid, write its report, print the verdict table and the report's path.

    Args:
        data: an Ultralytics data YAML (default: the embedded BCCD data).
        quick: the two-minute first look (2 variants, 1 seed, 1 epoch).
        out: the grid folder (default ``runs/attnyolo/demo`` or ``runs/attnyolo/demo-quick``).
        seeds: seeds per variant (default 2, quick 1).
        resamples: bootstrap resamples of the verdicts.
        workers: runs at once, each in its own process (default :func:`demo_workers`); the results do not depend
            on it beyond floating-point noise (torch threads per run = cores / workers).
        console: a rich Console.
        **yolo_args: Ultralytics training arguments replacing the recipe's (``epochs=3 imgsz=256 device=0``).

    Returns:
        (analysis, path of report.html, wall seconds of this call).
    """
    from attnyolo.console import make_console
    from attnyolo.experiments import ablate
    from attnyolo.experiments.driver import GridInterrupted
    from attnyolo.report import print_table, write_report

    console = console or make_console()
    if isinstance(data, Mapping):
        raise DemoError("data must be the path of a data YAML")
    grid = demo_grid(data, quick=quick, seeds=seeds, **yolo_args)
    folder = Path(out) if out is not None else Path("runs/attnyolo") / ("demo-quick" if quick else "demo")
    t0 = time.perf_counter()
    try:
        ablate(grid, out=folder, console=console, workers=demo_workers() if workers is None else workers)
    except GridInterrupted as e:  # the demo's own command resumes it (and writes its report at the end)
        e.resume = demo_command(data, quick, folder, seeds, yolo_args, workers)
        raise
    analysis, _, page = write_report(folder, resamples=resamples)
    wall = time.perf_counter() - t0
    title = f"attnyolo demo: {data_label(data)} (fine-tuned from the shipped base, seeds {grid['seeds']})"
    print_table(analysis, console, title=title)
    console.print(f"report: {page.resolve()}")
    console.print(f"grid folder (resumable; `attnyolo report {folder}` redraws): {folder}  wall time {wall:.0f} s")
    return analysis, page, wall
