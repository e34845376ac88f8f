"""From a grid's results database to the numbers of the report: one :class:`VariantRow` per variant.

Reads the store (:class:`attnyolo.experiments.store.ResultsStore`) and each run's ``val_stats.npz``, pairs every
variant's runs with the baseline's runs of the same seeds, and hands them to :mod:`attnyolo.report.stats`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attnyolo.checkpoints import load_checkpoint
from attnyolo.errors import AttnYoloError
from attnyolo.graph.attention_layers import label_order
from attnyolo.report import stats

CONTROL_FLOOR = 0.01
"""A control (baseline) below this mAP50-95 detects (almost) nothing: its comparisons say nothing about attention."""
CONTROL_SHARE = 0.5
"""A control below this share of the start checkpoint's own mAP50-95 on the same data lost what it knew."""
MAP_COLUMN = "metrics/mAP50-95(B)"


class ReportError(AttnYoloError):
    """A grid folder the report cannot be drawn from (no database, nothing finished, no baseline)."""


@dataclass(frozen=True)
class LayerEngagement:
    """One attention layer of a variant: its engagement over its seeds and its last γ."""

    label: str
    attention: str
    r_median: float
    """Median of r over the validation images, mean over the seeds."""
    r_max: float
    """Largest r over the validation images and the seeds."""
    gamma: float | None
    """γ at the last logged epoch, mean over the seeds (``None``: no γ logged for this layer)."""


@dataclass
class VariantRow:
    """One variant's line of the verdict table (the baseline's too, with Δ = 0 and no verdict)."""

    variant: str
    attention: str | None
    placement: str
    seeds: list[int]
    params: int
    gflops: float
    d_params: int
    d_gflops: float
    latency_ratio: float
    map50: tuple[float, float]
    map50_95: tuple[float, float]
    precision: tuple[float, float]
    recall: tuple[float, float]
    delta: float = 0.0
    low: float = 0.0
    high: float = 0.0
    p_holm: float = 1.0
    verdict: str = "reference"
    gamma_moved: float = 0.0
    engagement: list[LayerEngagement] | None = None
    """Per attention layer in model order; ``None`` when unknown (a run without stored engagement) or no attention."""
    runs: list[dict] = field(default_factory=list, repr=False)

    @property
    def is_baseline(self) -> bool:
        return self.verdict == "reference"

    @property
    def r_median(self) -> float | None:
        """Median over the layers of each layer's median r (``None``: unknown)."""
        return float(np.median([layer.r_median for layer in self.engagement])) if self.engagement else None

    @property
    def r_max(self) -> float | None:
        """Largest per-layer median r (``None``: unknown); below τ in every layer means "not engaged"."""
        return max(layer.r_median for layer in self.engagement) if self.engagement else None


@dataclass
class Analysis:
    """Everything the report shows, computed once."""

    folder: Path
    grid: dict
    rows: list[VariantRow]
    """Sorted by Δ mAP50-95, largest first (the baseline sits at 0)."""
    resamples: int
    alpha: float
    missing: list[str]
    """Runs that are not done (pending, running, failed) and are left out."""
    base_map50_95: float | None = None
    """The start checkpoint's own mAP50-95 on this grid's data, when it is known (see :func:`base_reference`)."""
    base_source: str = ""

    @property
    def baseline(self) -> VariantRow:
        return next(r for r in self.rows if r.is_baseline)


def _placement(run: dict) -> str:
    where = run.get("placement")
    if where is None:
        return "-"
    return ",".join(str(w) for w in where) if isinstance(where, list) else str(where)


def _load_stats(folder: Path, run: dict) -> dict | None:
    path = run.get("val_stats")
    if not path:
        return None
    p = Path(path) if os.path.isabs(path) else folder / path
    if not p.is_file():
        return None
    with np.load(p, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def open_store(folder: str | os.PathLike):
    """The grid folder's store, with one-line errors for a missing, foreign or empty database."""
    from attnyolo.experiments.store import ResultsStore

    return ResultsStore(folder)  # StoreNotFoundError / SchemaError are AttnYoloErrors with clear messages


def analyse(
    folder: str | os.PathLike,
    *,
    resamples: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
    progress: Callable[[str], None] | None = None,
) -> Analysis:
    """Read the grid folder's database and compute every row of the verdict table.

    ``progress``: called with a short line at each step (the bootstrap of each comparison takes seconds).

    Raises:
        ReportError: no finished run, or no finished baseline run.
        attnyolo.experiments.store.StoreNotFoundError / SchemaError: no database / another schema version.
    """
    folder = Path(folder)
    with open_store(folder) as store:
        grid = store.grid()
        every = store.runs(None)
        runs = [r for r in every if r["state"] == "done"]
    if not every:
        raise ReportError(f"{folder}: the results database holds no runs yet; run `attnyolo ablate` first")
    if not runs:
        raise ReportError(f"{folder}: no run of this grid has finished yet ({len(every)} pending or failed)")
    base_runs = sorted((r for r in runs if r["is_baseline"]), key=lambda r: r["seed"])
    if not base_runs:
        raise ReportError(f"{folder}: the baseline has no finished run, so nothing can be compared")
    base_by_seed = {r["seed"]: r for r in base_runs}
    base0 = base_runs[0]
    say = progress or (lambda _line: None)
    say(f"{len(runs)} finished run(s) of {len(every)} in {folder / 'ablate.sqlite'}")

    def row_of(variant_runs: list[dict]) -> VariantRow:
        r0 = variant_runs[0]
        summary = stats.summarise(variant_runs)[r0["variant"]]
        costs = [stats.cost_columns(r, base_by_seed.get(r["seed"], base0)) for r in variant_runs]
        row = VariantRow(
            variant=r0["variant"],
            attention=r0.get("attention"),
            placement=_placement(r0),
            seeds=[int(r["seed"]) for r in variant_runs],
            params=int(r0["params"]),
            gflops=float(r0["gflops"]),
            d_params=costs[0]["d_params"],
            d_gflops=costs[0]["d_gflops"],
            latency_ratio=float(np.mean([c["latency_ratio"] for c in costs])),
            map50=summary["map50"],
            map50_95=summary["map50_95"],
            precision=summary["precision"],
            recall=summary["recall"],
            gamma_moved=float(np.mean([stats.gamma_moved(r.get("gamma") or []) for r in variant_runs])),
            runs=variant_runs,
        )
        row.engagement = layer_engagement(row)
        return row

    by_variant: dict[str, list[dict]] = {}
    for r in runs:
        by_variant.setdefault(r["variant"], []).append(r)
    rows = []
    pairs: dict[str, tuple[list[dict], list[dict]]] = {}
    for name, vruns in by_variant.items():
        vruns.sort(key=lambda r: r["seed"])
        row = row_of(vruns)
        if vruns[0]["is_baseline"]:
            row.verdict = "reference"
            row.latency_ratio = 1.0
        else:
            row.verdict = stats.NO_DIFFERENCE
            seeds = [r["seed"] for r in vruns if r["seed"] in base_by_seed]
            v_stats = [_load_stats(folder, r) for r in vruns if r["seed"] in base_by_seed]
            b_stats = [_load_stats(folder, base_by_seed[s]) for s in seeds]
            if seeds and all(s is not None for s in (*v_stats, *b_stats)):
                pairs[name] = (v_stats, b_stats)
            else:
                row.verdict = "no per-image statistics (not compared)"
        rows.append(row)

    # one bootstrap per baseline seed set, so that every variant with the same seeds shares the resamples
    comparisons = []
    groups: dict[tuple, dict[str, list]] = {}
    for name, (v_stats, b_stats) in pairs.items():
        key = tuple(id(b) for b in b_stats)
        groups.setdefault(key, {"base": b_stats, "variants": {}})["variants"][name] = v_stats
    n_comparisons, t0 = len(pairs), time.monotonic()
    done = 0
    for group in groups.values():

        def step(k: int, _n: int, name: str, offset: int = done) -> None:
            elapsed = time.monotonic() - t0
            say(f"bootstrap {offset + k}/{n_comparisons} ({name}, {resamples:,} resamples), {elapsed:.0f} s")

        comparisons += stats.bootstrap(group["variants"], group["base"], resamples=resamples, seed=seed, progress=step)
        done += len(group["variants"])
    for v in stats.verdicts(comparisons, alpha):
        row = next(r for r in rows if r.variant == v.variant)
        row.delta, row.low, row.high, row.p_holm = v.delta, v.low, v.high, v.p_holm
        row.verdict = stats.engagement_verdict(v.verdict, row.r_max)
    for row in rows:  # variants without per-image statistics: the difference of the means, no interval
        if not row.is_baseline and row.variant not in pairs:
            row.delta = row.map50_95[0] - next(r for r in rows if r.is_baseline).map50_95[0]
    rows.sort(key=lambda r: (-r.delta, r.variant))
    missing = [
        f"{r['run_id']} ({r['state']}{': ' + r['error'] if r.get('error') else ''})"
        for r in every
        if r["state"] != "done"
    ]
    reference = base_reference(grid.get("config", {}))
    a = Analysis(folder, grid, rows, resamples, alpha, missing)
    if reference is not None:
        a.base_map50_95, a.base_source = reference
    return a


def base_reference(config: dict) -> tuple[float, str] | None:
    """The start checkpoint's own mAP50-95 on this grid's data, and where it comes from; ``None`` when unknown.

    Known only when the start is an Ultralytics ``.pt`` that was trained on the very data YAML of the grid (its
    ``train_args.data``) and records its validation metrics (``train_metrics``): a checkpoint trained on other
    data (another class count, other images) has no comparable number, and a ``.safetensors`` start records
    none. The checkpoint is read as the grid read it (the grid's ``trust``); any failure means unknown.
    """
    weights, data = config.get("weights"), config.get("data")
    if not weights or not data or not str(weights).endswith(".pt") or not Path(weights).is_file():
        return None
    try:
        ckpt = load_checkpoint(weights, trust=bool(config.get("trust", False)))
    except (AttnYoloError, OSError):
        return None
    train_data = (ckpt.get("train_args") or {}).get("data")
    value = (ckpt.get("train_metrics") or {}).get(MAP_COLUMN)
    if not train_data or value is None or not Path(train_data).is_file():
        return None
    if Path(train_data).resolve() != Path(data).resolve():
        return None
    imgsz = (ckpt.get("train_args") or {}).get("imgsz")
    return float(value), f"{weights}'s own validation on {data}" + (f" at imgsz {imgsz}" if imgsz else "")


def control_warnings(a: Analysis) -> list[str]:
    """Warnings when the control (the baseline) does not detect: its verdicts would compare detectors that fail.

    Near zero (mAP50-95 below :data:`CONTROL_FLOOR`), or below :data:`CONTROL_SHARE` of the start checkpoint's own
    mAP50-95 on the same data when that is known (:func:`base_reference`).
    """
    control = a.baseline.map50_95[0]
    out = []
    if control < CONTROL_FLOOR:
        out.append(
            f"the control (baseline) detects almost nothing: mAP50-95 {control:.4f} (< {CONTROL_FLOOR}), so "
            "every comparison here is between detectors that fail and 'no measurable difference' says nothing "
            "about the attention; check the data (labels, class names and count), the start weights and the "
            "recipe (epochs, imgsz) before reading the verdicts"
        )
    if a.base_map50_95 is not None and a.base_map50_95 > 0 and control < CONTROL_SHARE * a.base_map50_95:
        out.append(
            f"the control (baseline) scores mAP50-95 {control:.4f}, less than {CONTROL_SHARE:.0%} of the start "
            f"checkpoint's {a.base_map50_95:.4f} ({a.base_source}): the fine-tuning lost what the start knew, so "
            "the comparisons are against a broken control"
        )
    return out


def stored_vs_curves(a: Analysis) -> tuple[float, str] | None:
    """Largest |stored mAP50-95 - last results.csv value| over the runs, and its run id (``None``: no curves)."""
    gaps = []
    for row in a.rows:
        for r in row.runs:
            values = [e.get(MAP_COLUMN) for e in r.get("epochs") or [] if isinstance(e.get(MAP_COLUMN), (int, float))]
            if values:
                gaps.append((abs(float(r["map50_95"]) - float(values[-1])), r["run_id"]))
    return max(gaps) if gaps else None


def val_commands(a: Analysis) -> list[tuple[str, str | None]]:
    """``(run_id, the command that prints its stored metrics again)`` per run, ``None`` when not recorded."""
    return [
        (r["run_id"], ((r.get("config") or {}).get("val") or {}).get("command"))
        for row in a.rows
        for r in sorted(row.runs, key=lambda r: r["seed"])
    ]


def epoch_curves(row: VariantRow, column: str = MAP_COLUMN) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(epochs, mean, std) over the variant's seeds of one results.csv column."""
    series = []
    for r in row.runs:
        values = [float(e[column]) for e in r.get("epochs") or [] if isinstance(e.get(column), (int, float))]
        if values:
            series.append(values)
    if not series:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    n = min(len(s) for s in series)
    arr = np.array([s[:n] for s in series])
    return np.arange(1, n + 1), arr.mean(0), arr.std(0, ddof=1) if len(arr) > 1 else np.zeros(n)


def gamma_series(row: VariantRow) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per attention layer (its label, :mod:`attnyolo.graph.attention_layers`), in model order: (epochs, γ mean over
    seeds) from the runs' ``attnyolo_gamma.csv`` rows."""
    acc: dict[str, dict[int, list[float]]] = {}
    for r in row.runs:
        for g in r.get("gamma") or []:
            acc.setdefault(_layer_label(g["layer"]), {}).setdefault(int(g["epoch"]), []).append(float(g["gamma"]))
    return {
        layer: (np.array(sorted(e)), np.array([np.mean(e[k]) for k in sorted(e)]))
        for layer, e in sorted(acc.items(), key=lambda item: label_order(item[0]))
    }


def layer_engagement(row: VariantRow) -> list[LayerEngagement] | None:
    """The variant's engagement per attention layer over its seeds, in model order; ``None`` when a run of it has no
    stored engagement (the baseline, or runs measured before the results database had it: unknown)."""
    per_run = [r.get("engagement") for r in row.runs]
    if not per_run or any(not layers for layers in per_run):
        return None
    gammas = gamma_series(row)
    by_label: dict[str, list[dict]] = {}
    for layers in per_run:
        for layer in layers:
            by_label.setdefault(str(layer["label"]), []).append(layer)
    return [
        LayerEngagement(
            label=label,
            attention=str(seen[0]["attention"]),
            r_median=float(np.mean([float(x["r_median"]) for x in seen])),
            r_max=float(max(float(x["r_max"]) for x in seen)),
            gamma=float(gammas[label][1][-1]) if label in gammas and len(gammas[label][1]) else None,
        )
        for label, seen in sorted(by_label.items(), key=lambda item: label_order(item[0]))
    ]


def _layer_label(value) -> str:
    # the store keeps CSV cells as numbers where they parse: layer 16 may come back as 16 or 16.0
    return str(int(value)) if isinstance(value, int | float) else str(value)


def per_class_delta(row: VariantRow, baseline: VariantRow) -> dict[str, float]:
    """Mean over seeds of the per-class AP50-95, minus the baseline's."""

    def mean_ap(rs: list[dict]) -> dict[str, float]:
        names = {k for r in rs for k in (r.get("per_class_ap") or {})}
        return {
            k: float(np.mean([r["per_class_ap"][k] for r in rs if k in (r.get("per_class_ap") or {})])) for k in names
        }

    mine, base = mean_ap(row.runs), mean_ap(baseline.runs)
    return {k: mine[k] - base[k] for k in sorted(mine) if k in base}


def pareto_front(cost: list[float], value: list[float]) -> list[int]:
    """Indices of the points no other point beats (lower or equal cost and higher or equal value, one strictly)."""
    front = []
    for i, (c, v) in enumerate(zip(cost, value, strict=True)):
        dominated = any(
            (c2 <= c and v2 >= v) and (c2 < c or v2 > v)
            for j, (c2, v2) in enumerate(zip(cost, value, strict=True))
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: cost[i])


def describe(value: Any) -> str:
    """A compact, readable rendering of a config value for the recipe section."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={describe(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(describe(v) for v in value) + "]"
    return str(value)
