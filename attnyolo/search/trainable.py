"""The Ray Tune trainable of a search: one candidate's attnyolo run, reporting mAP50-95 after every epoch.

The run is the grid runner's (:mod:`attnyolo.experiments.runner`): the same start model (the base checkpoint
transferred through the index map, identity start, the grid's freezing and attention recipe, the γ log), trained by
Ultralytics for the lead-in and the last rung's epochs into ``SEARCH_DIR/runs/<candidate>``. After each epoch
Ultralytics validates (``trainer.metrics``); an ``on_fit_epoch_end`` callback reports that mAP50-95 to Ray Tune, whose
ASHA scheduler stops the trial at a rung where the candidate falls behind. The epochs reported count after the
lead-in (the attention warm-up or ``freeze_epochs``: a frozen base, where the candidates barely differ), so the first
rung is ``grace`` epochs of the whole model. Ultralytics' learning-rate schedule spans the whole run for every
candidate, so a rung's score is the same point of the same schedule for all of them.

Resume after a kill: a run folder whose ``weights/last.pt`` holds finished epochs is not trained again. Its epochs
are replayed to Ray Tune from ``results.csv`` (the scores Ultralytics validated then), so ASHA sees the same reports
and makes its decisions again, and training, if ASHA lets the candidate go on, continues from ``last.pt``.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from ray import tune

from attnyolo.data.check import check_data
from attnyolo.experiments.grid import Variant, attention_recipe, resolve
from attnyolo.experiments.run_hosts.csv_rows import read_csv
from attnyolo.experiments.runner import configured_yolo, save_start, start_file, start_model
from attnyolo.search.run_mirror import place_run
from attnyolo.search.schedule import EPOCH, METRIC
from attnyolo.search.store import RUNS

MAP_KEY = "metrics/mAP50-95(B)"
MAP50_KEY = "metrics/mAP50(B)"
"""Ultralytics' names of the per-epoch validation metrics in ``trainer.metrics`` and ``results.csv``."""


def finished_epochs(run_dir: Path) -> int:
    """How many epochs of the run in ``run_dir`` are done for good (0: none, start afresh).

    ``last.pt`` with an optimizer was written after epoch ``epoch`` (0-based) and can continue; Ultralytics strips the
    optimizer (and sets ``epoch = -1``) when training ended, and then every epoch in ``results.csv`` is done.
    """
    last = run_dir / "weights" / "last.pt"
    if not last.is_file():
        return 0
    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=False)  # this run's own file, written by us
    except Exception:  # a file cut short by the kill: start the run again
        return 0
    if ckpt.get("optimizer") is not None and int(ckpt.get("epoch", -1)) >= 0:
        return int(ckpt["epoch"]) + 1
    return max((int(r["epoch"]) for r in epoch_rows(run_dir)), default=0)


def epoch_rows(run_dir: Path) -> list[dict]:
    """``results.csv``'s rows, the later row of an epoch done twice winning (a kill between its csv and last.pt)."""
    rows = {int(r["epoch"]): r for r in read_csv(run_dir / "results.csv") if isinstance(r.get("epoch"), int)}
    return [rows[e] for e in sorted(rows)]


def report(epoch: int, map50_95: float, map50: float | None, replayed: bool, lead_in: int = 0) -> None:
    """Report the run's ``epoch`` to ASHA as ``epoch - lead_in`` (the epochs after the lead-in, which is not
    reported: during it the base is frozen and every candidate scores alike)."""
    epoch -= lead_in
    if epoch < 1:
        return
    score = float(map50_95)
    tune.report({EPOCH: int(epoch), METRIC: 0.0 if math.isnan(score) else score, "map50": map50, "replayed": replayed})


def train_candidate(config: dict[str, Any]) -> None:
    """Ray Tune function trainable. ``config``: ``label`` (the candidate), ``search_dir``, ``grid`` (the resolved
    grid config whose ``recipe.epochs`` is the lead-in plus the last rung), ``variants`` (label -> variant dict),
    ``seed``, ``threads``, ``lead_in`` (epochs before the rungs count, ``Schedule.lead_in``), ``token`` (the search
    folder's, :mod:`attnyolo.search.run_mirror`; ``None``: the driver's folder is always seen)."""
    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    label = config["label"]
    grid = resolve(config["grid"], check=False)
    max_epochs = int(grid.recipe["epochs"])  # the lead-in and the last rung
    lead = int(config.get("lead_in", 0))
    place = place_run(Path(config["search_dir"]) / RUNS, config.get("token"), label)
    runs_dir = place.runs_dir
    run_dir = runs_dir / label

    done = finished_epochs(run_dir)
    for row in epoch_rows(run_dir):
        if row["epoch"] <= done:
            report(row["epoch"], row[MAP_KEY], row.get(MAP50_KEY), replayed=True, lead_in=lead)
    if done >= max_epochs:
        return

    info = check_data(grid.data)
    start = start_model(grid, Variant(**config["variants"][label]), int(config["seed"]), int(info["nc"]), info["names"])
    schedule = {"freeze_epochs": grid.freeze_epochs, "recipe": attention_recipe(grid), "epochs": max_epochs}
    start_pt = start_file(runs_dir, label)
    try:
        if done:
            yolo = configured_yolo(run_dir / "weights" / "last.pt", start, label, resumed=True, **schedule)
            _add_report_callback(yolo, place.sync, lead)
            yolo.train(resume=True, save_dir=str(run_dir))  # last.pt names where it trained: maybe another node
        else:
            shutil.rmtree(run_dir, ignore_errors=True)  # a run killed before its first epoch: start it again
            runs_dir.mkdir(parents=True, exist_ok=True)
            save_start(start.model, start_pt, grid.data, {"base": grid.weights or grid.model, "run_id": label})
            yolo = configured_yolo(start_pt, start, label, **schedule)
            _add_report_callback(yolo, place.sync, lead)
            yolo.train(
                data=grid.data,
                seed=int(config["seed"]),
                project=str(runs_dir),
                name=label,
                exist_ok=True,
                **grid.recipe,
            )
    finally:
        start_pt.unlink(missing_ok=True)


def _add_report_callback(yolo: Any, sync: Callable[[], None], lead_in: int) -> None:
    # Ultralytics' own Ray Tune report is dropped by add_run_callbacks (drop_ultralytics_raytune): it would give
    # ASHA a second result per epoch, with other keys
    def on_fit_epoch_end(trainer: Any) -> None:
        # after Ultralytics validated the epoch and saved last.pt: a kill from here on loses nothing of this epoch
        sync()  # the driver holds the epoch before ASHA sees its score
        metrics = trainer.metrics or {}
        epoch, score = int(trainer.epoch) + 1, metrics.get(MAP_KEY, float("nan"))
        report(epoch, score, metrics.get(MAP50_KEY), replayed=False, lead_in=lead_in)

    yolo.add_callback("on_fit_epoch_end", on_fit_epoch_end)
