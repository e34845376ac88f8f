"""From a grid's results database to the numbers of the report: one :class:`VariantRow` per variant.

Reads the store (:class:`attnyolo.experiments.store.ResultsStore`) and each run's ``val_stats.npz``, pairs every
variant's runs with the baseline's runs of the same seeds, and hands them to :mod:`attnyolo.stats`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attnyolo import stats
from attnyolo.errors import AttnYoloError
from attnyolo.graph.attention_layers import label_order


class ReportError(AttnYoloError):
    """A grid folder the report cannot be drawn from (no database, nothing finished, no baseline)."""


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
    runs: list[dict] = field(default_factory=list, repr=False)

    @property
    def is_baseline(self) -> bool:
        return self.verdict == "reference"


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


def analyse(folder: str | os.PathLike, *, resamples: int = 10_000, seed: int = 0, alpha: float = 0.05) -> Analysis:
    """Read the grid folder's database and compute every row of the verdict table.

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

    def row_of(variant_runs: list[dict]) -> VariantRow:
        r0 = variant_runs[0]
        summary = stats.summarise(variant_runs)[r0["variant"]]
        costs = [stats.cost_columns(r, base_by_seed.get(r["seed"], base0)) for r in variant_runs]
        return VariantRow(
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
    for group in groups.values():
        comparisons += stats.bootstrap(group["variants"], group["base"], resamples=resamples, seed=seed)
    for v in stats.verdicts(comparisons, alpha):
        row = next(r for r in rows if r.variant == v.variant)
        row.delta, row.low, row.high, row.p_holm, row.verdict = v.delta, v.low, v.high, v.p_holm, v.verdict
    for row in rows:  # variants without per-image statistics: the difference of the means, no interval
        if not row.is_baseline and row.variant not in pairs:
            row.delta = row.map50_95[0] - next(r for r in rows if r.is_baseline).map50_95[0]
    rows.sort(key=lambda r: (-r.delta, r.variant))
    missing = [
        f"{r['run_id']} ({r['state']}{': ' + r['error'] if r.get('error') else ''})"
        for r in every
        if r["state"] != "done"
    ]
    return Analysis(folder, grid, rows, resamples, alpha, missing)


def epoch_curves(row: VariantRow, column: str = "metrics/mAP50-95(B)") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
