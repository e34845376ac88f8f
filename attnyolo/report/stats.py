"""Statistics behind the verdicts: seed summaries, a paired bootstrap over validation images, Holm, verdicts.

Pure functions (numpy only; no training, no files): they take the per-image validation statistics of runs (the
arrays of ``runs/<run_id>/val_stats.npz``, see :mod:`attnyolo.experiments`) and rows of the results store.

How the interval of a difference is built (:func:`paired_bootstrap`): every resample draws the validation images
with replacement (multiplicities ``w``), the *same* draw for the variant and the baseline, and recomputes both
models' mAP50-95 on it; with several seeds it also draws the seeds with replacement, pairing the variant's and the
baseline's runs of the same seed, so the interval covers image noise and training noise. The percentile interval
of the 10,000 differences is reported.

The AP of a resample is Ultralytics' (``ultralytics.utils.metrics.ap_per_class``: precision envelope, 101-point
interpolation, trapezoid, mean over the classes that have targets), evaluated without copying predictions: an
image drawn ``w`` times weights its predictions and targets by ``w``. Only the points where the recall changes
can change the interpolated envelope (the first and the last point of each recall level), so each resample is
evaluated on those points alone, for all resamples at once. ``tests/report/test_stats.py`` checks the result against
``ap_per_class`` on explicitly duplicated predictions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from attnyolo.errors import AttnYoloError

AP_X = np.linspace(0, 1, 101)
"""Recall points of the COCO 101-point interpolation (Ultralytics' ``compute_ap``)."""

NO_DIFFERENCE = "no measurable difference at this budget"
ENGAGEMENT_TAU = 0.05
"""τ: an attention layer whose ``r = ‖out − in‖ / ‖in‖`` (median over the validation images) stays below it is not
engaged. Chosen from measurement (issue 21, on the embedded BCCD data from the shipped base): at the identity start
r = 0 exactly; after today's 2-epoch demo recipe every layer of all 12 attention runs had r ≤ 0.0024 (γ a random
walk around 0); with the engaging recipe (new tensors trained with the base frozen) r was 0.08 to 1.10. 0.05 is
20 times the largest unengaged value and below the smallest engaged one, and it is the issue's target (median r ≥
0.05 for every attention variant)."""
NOT_ENGAGED = "attention not engaged at this budget"
ENGAGED_NO_DIFFERENCE = "engaged; no measurable difference"
STAT_KEYS = ("tp", "conf", "pred_cls", "pred_img", "target_cls", "target_img")


class StatsError(AttnYoloError):
    """Per-image statistics or results that cannot be compared (missing arrays, other images, no baseline)."""


# ------------------------------------------------------------------------------------------------ seed summaries


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise StatsError("mean_std: no values")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def summarise(runs: Sequence[Mapping[str, Any]], keys: Sequence[str] = ("map50", "map50_95", "precision", "recall")):
    """Mean ± std over seeds of each metric, per variant: ``{variant: {key: (mean, std), "n": seeds}}``."""
    out: dict[str, dict[str, Any]] = {}
    for variant in dict.fromkeys(r["variant"] for r in runs):
        rows = [r for r in runs if r["variant"] == variant]
        out[variant] = {k: mean_std([float(r[k]) for r in rows]) for k in keys} | {"n": len(rows)}
    return out


# ----------------------------------------------------------------------------------------------- per-image AP


def check_stats(stats: Mapping[str, np.ndarray], name: str = "stats") -> dict[str, np.ndarray]:
    """Validate one run's per-image arrays and return them with the dtypes the functions below use."""
    missing = [k for k in STAT_KEYS if k not in stats]
    if missing:
        raise StatsError(f"{name}: per-image statistics lack {', '.join(missing)} (expected {', '.join(STAT_KEYS)})")
    s = {k: np.asarray(stats[k]) for k in STAT_KEYS}
    tp = s["tp"].astype(bool).reshape(len(s["conf"]), -1)
    n = len(s["conf"])
    if not (len(tp) == len(s["pred_cls"]) == len(s["pred_img"]) == n):
        raise StatsError(f"{name}: tp, conf, pred_cls and pred_img must have one row per prediction")
    if len(s["target_cls"]) != len(s["target_img"]):
        raise StatsError(f"{name}: target_cls and target_img must have one entry per target")
    out = {
        "tp": tp,
        "conf": s["conf"].astype(np.float64),
        "pred_cls": s["pred_cls"].astype(np.int64),
        "pred_img": s["pred_img"].astype(np.int64),
        "target_cls": s["target_cls"].astype(np.int64),
        "target_img": s["target_img"].astype(np.int64),
    }
    if "images" in stats:
        out["images"] = np.asarray(stats["images"])
    return out


def map_ultralytics(stats: Mapping[str, np.ndarray]) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(mAP50, mAP50-95, AP50-95 per class, the classes) over all images, by Ultralytics' ``ap_per_class``."""
    from ultralytics.utils.metrics import ap_per_class

    s = check_stats(stats)
    if len(s["target_cls"]) == 0:
        return 0.0, 0.0, np.zeros(0), np.zeros(0, dtype=np.int64)
    res = ap_per_class(s["tp"], s["conf"], s["pred_cls"], s["target_cls"])
    ap, classes = res[5], res[6]
    return float(ap[:, 0].mean()), float(ap.mean()), ap.mean(1), classes


def _class_points(
    s: dict[str, np.ndarray], cls: int, n_img: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-image cumulative TP/FP counts at the true positives of class ``cls``, every IoU threshold after another.

    Returns (tp_counts, fp_counts, starts, n_targets): the first two are (n_img, P) cumulative counts per image at
    the P true positives of all thresholds (threshold 0's in confidence order, then threshold 1's...); ``starts``
    the index where each threshold's points begin (a threshold without true positives gets one point of zeros,
    recall 0: no contribution); n_targets (n_img,) the per-image target counts. Weighted by image multiplicities
    (``w @ counts``) they give a resample's cumulative TP/FP at those points.
    """
    mask = s["pred_cls"] == cls
    order = np.argsort(-s["conf"][mask], kind="stable")
    tp = s["tp"][mask][order]  # (n, T)
    img = s["pred_img"][mask][order]
    n, n_thr = tp.shape
    onehot = np.zeros((n_img, n))
    onehot[img, np.arange(n)] = 1.0
    tps, fps, starts = [], [], []
    for j in range(n_thr):
        idx = np.flatnonzero(tp[:, j])
        starts.append(sum(t.shape[1] for t in tps))
        if len(idx) == 0:
            tps.append(np.zeros((n_img, 1)))
            fps.append(np.zeros((n_img, 1)))
            continue
        tps.append(np.cumsum(onehot * tp[:, j], axis=1)[:, idx])
        fps.append(np.cumsum(onehot * ~tp[:, j], axis=1)[:, idx])
    n_targets = np.bincount(s["target_img"][s["target_cls"] == cls], minlength=n_img).astype(np.float64)
    return np.concatenate(tps, 1), np.concatenate(fps, 1), np.array(starts), n_targets


class ResampledMAP:
    """mAP50-95 of one run on image resamples; the per-class curve points are prepared once.

    ``ResampledMAP(stats, n_img)(weights)`` with ``weights`` (B, n_img) image multiplicities returns (B,) values
    equal to Ultralytics' ``ap_per_class`` run on each resample with every image repeated ``weights[b, i]`` times
    (tested), without building those copies.
    """

    def __init__(self, stats: Mapping[str, np.ndarray], n_img: int, eps: float = 1e-16) -> None:
        s = check_stats(stats)
        if (len(s["pred_img"]) and s["pred_img"].max() >= n_img) or (
            len(s["target_img"]) and s["target_img"].max() >= n_img
        ):
            raise StatsError(f"image indices exceed the {n_img} validation images")
        self.n_img, self.eps, self.n_thr = n_img, eps, s["tp"].shape[1]
        self.classes = []
        for c in np.unique(s["target_cls"]):
            tp_counts, fp_counts, starts, n_targets = _class_points(s, int(c), n_img)
            seg = np.repeat(np.arange(len(starts), 0, -1), np.diff(np.append(starts, tp_counts.shape[1])))
            self.classes.append((tp_counts, fp_counts, starts, seg.astype(np.float64), n_targets))

    def __call__(self, weights: np.ndarray, chunk: int = 200) -> np.ndarray:
        w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        if w.shape[1] != self.n_img:
            raise StatsError(f"weights have {w.shape[1]} columns; expected one per image ({self.n_img})")
        return np.concatenate([self._chunk(w[i : i + chunk]) for i in range(0, len(w), chunk)] or [np.zeros(0)])

    def _chunk(self, w: np.ndarray) -> np.ndarray:
        # Ultralytics' AP (compute_ap): precision envelope (suffix maximum), np.interp at 101 recall points, then
        # a trapezoid. Between two true positives the envelope is flat at the later one's value (a false positive
        # has a lower precision than the true positive after it), so the interpolated value at x is the envelope
        # at the first true positive whose recall exceeds x, and 0 past the last one: a step function, summed by
        # counting the grid points below each true positive's recall. A true positive never pushes the recall
        # above 1 (each target is matched once per threshold, as Ultralytics' validator does).
        b = len(w)
        ap_sum, n_present = np.zeros(b), np.zeros(b)
        step = AP_X[1] - AP_X[0]
        for tp_counts, fp_counts, starts, seg, n_targets in self.classes:
            n_l = w @ n_targets
            tpc = w @ tp_counts  # (b, P)
            fpc = w @ fp_counts
            recall = tpc / (n_l[:, None] + self.eps)
            denom = tpc + fpc
            with np.errstate(divide="ignore", invalid="ignore"):
                precision = np.where(denom > 0, tpc / denom, 0.0)  # nothing predicted yet: recall 0, never used
            # suffix maximum within each threshold's segment: later segments are lifted above earlier ones, so the
            # running maximum (taken from the end) restarts at every segment boundary
            lift = 2.0 * seg
            envelope = np.flip(np.maximum.accumulate(np.flip(precision + lift, 1), axis=1), 1) - lift
            below = np.searchsorted(AP_X, recall.ravel(), side="left").reshape(recall.shape)  # grid points < recall
            steps = np.diff(below, axis=1, prepend=0)
            steps[:, starts] = below[:, starts]  # each segment counts from recall 0
            total = np.add.reduceat(envelope * steps, starts, axis=1)  # (b, T)
            ends = np.append(starts[1:], below.shape[1]) - 1
            at_0 = np.where(below[:, ends] > 0, envelope[:, starts], 0.0)  # value at x=0 counts half
            ap = ((total - 0.5 * at_0) * step).mean(1)
            present = n_l > 0  # ap_per_class averages over the classes that have targets in the sample
            ap_sum += np.where(present, ap, 0.0)
            n_present += present
        return np.where(n_present > 0, ap_sum / np.maximum(n_present, 1), 0.0)


# --------------------------------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class Comparison:
    """A variant against the baseline: the observed difference and its bootstrap distribution."""

    variant: str
    delta: float
    """Observed Δ mAP50-95: mean over seeds of (variant - baseline), all images."""
    deltas: np.ndarray
    """The resampled differences (B,)."""
    p_value: float
    """Two-sided bootstrap p-value of Δ = 0: 2·min(share ≤ 0, share ≥ 0), with the +1 correction."""

    def interval(self, alpha: float) -> tuple[float, float]:
        """Percentile interval of Δ at level 1 - alpha."""
        lo, hi = np.quantile(self.deltas, [alpha / 2, 1 - alpha / 2])
        return float(lo), float(hi)


def _images_of(stats: Sequence[Mapping[str, np.ndarray]]) -> int:
    n = None
    for s in stats:
        if "images" in s:
            m = len(s["images"])
        else:
            m = 1 + max(int(np.max(s["pred_img"], initial=-1)), int(np.max(s["target_img"], initial=-1)))
        if n is not None and m != n and "images" in s:
            raise StatsError(f"runs were validated on different images ({n} vs {m}); compare runs of one grid")
        n = m if n is None else max(n, m)
    return int(n or 0)


def bootstrap(
    variants: Mapping[str, Sequence[Mapping[str, np.ndarray]]],
    baseline: Sequence[Mapping[str, np.ndarray]],
    *,
    resamples: int = 10_000,
    seed: int = 0,
    weights: np.ndarray | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    threads: int | None = None,
) -> list[Comparison]:
    """Paired bootstrap of Δ mAP50-95 (variant - baseline) over validation images and seeds, for each variant.

    Every variant is compared on the same resamples (image multiplicities and seed draws), and the baseline's
    resampled mAP is computed once.

    Args:
        variants: variant label -> per-image statistics of its runs, one per seed, in the baseline's seed order.
        baseline: the baseline's runs, one per seed (pairs share a seed).
        resamples: bootstrap resamples.
        seed: RNG seed (fixed: the same call gives the same intervals).
        weights: image multiplicities (B, n_img) to use instead of drawing them (tests pass their own).
        progress: called ``(k, n, variant)`` when the k-th of the n variants is collected.
        threads: runs resampled at once (default: the cores); the values do not depend on it.

    Returns:
        One :class:`Comparison` per variant, in the given order.
    """
    if not baseline:
        raise StatsError("no baseline run to compare against (the baseline is part of every grid)")
    n_seeds = len(baseline)
    for name, runs in variants.items():
        if len(runs) != n_seeds:
            raise StatsError(f"{name}: {len(runs)} run(s) against {n_seeds} baseline run(s); pairs need the same seeds")
    everything = [*baseline, *(r for runs in variants.values() for r in runs)]
    n_img = _images_of(everything)
    for s in everything:
        if "images" in s and "images" in baseline[0] and not np.array_equal(s["images"], baseline[0]["images"]):
            raise StatsError("runs were validated on other images than the baseline; compare runs of one grid")
    rng = np.random.default_rng(seed)
    if weights is None:
        weights = rng.multinomial(n_img, np.full(n_img, 1.0 / n_img), size=resamples).astype(np.float64)
    seed_counts = (
        rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=len(weights))
        if n_seeds > 1
        else np.ones((len(weights), 1))
    )
    base_full = [map_ultralytics(b)[1] for b in baseline]
    # every run's resampled mAP on its own thread (numpy releases the GIL in the large array operations): the runs
    # are independent and share the read-only weights, so the values do not depend on the thread count
    with ThreadPoolExecutor(max(1, min(threads or _cores(), 1 + sum(map(len, variants.values()))))) as pool:
        base_resampled = [f.result() for f in [pool.submit(ResampledMAP(b, n_img), weights) for b in baseline]]
        resampled = {
            name: [pool.submit(ResampledMAP(v, n_img), weights) for v in runs] for name, runs in variants.items()
        }
        out = []
        for k, (name, runs) in enumerate(variants.items(), start=1):
            if progress is not None:
                progress(k, len(variants), name)
            observed = [map_ultralytics(v)[1] - base_full[i] for i, v in enumerate(runs)]
            per_seed = np.stack([f.result() - base_resampled[i] for i, f in enumerate(resampled[name])], 1)
            deltas = (per_seed * seed_counts).sum(1) / n_seeds
            total = len(deltas)
            p = 2 * min((np.sum(deltas <= 0) + 1) / (total + 1), (np.sum(deltas >= 0) + 1) / (total + 1))
            out.append(Comparison(name, float(np.mean(observed)), deltas, float(min(p, 1.0))))
    return out


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def paired_bootstrap(
    variant: Sequence[Mapping[str, np.ndarray]],
    baseline: Sequence[Mapping[str, np.ndarray]],
    *,
    resamples: int = 10_000,
    seed: int = 0,
    name: str = "variant",
    weights: np.ndarray | None = None,
) -> Comparison:
    """:func:`bootstrap` for one variant."""
    return bootstrap({name: variant}, baseline, resamples=resamples, seed=seed, weights=weights)[0]


# ------------------------------------------------------------------------------------------- Holm and verdicts


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as given)."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def holm_levels(p_values: Sequence[float], alpha: float = 0.05) -> np.ndarray:
    """Per comparison, the level Holm tests it at: alpha / (m - rank), rank 0 for the smallest p-value."""
    p = np.asarray(p_values, dtype=float)
    levels = np.empty(len(p))
    for rank, i in enumerate(np.argsort(p, kind="stable")):
        levels[i] = alpha / (len(p) - rank)
    return levels


@dataclass(frozen=True)
class Verdict:
    """One row of the verdict table's statistics."""

    variant: str
    delta: float
    low: float
    high: float
    p_value: float
    p_holm: float
    verdict: str

    @property
    def width(self) -> float:
        return self.high - self.low


def verdicts(comparisons: Sequence[Comparison], alpha: float = 0.05) -> list[Verdict]:
    """Holm-corrected verdicts: "better"/"worse" only when the Holm-adjusted p-value is below ``alpha``.

    The interval shown is the percentile interval at the level Holm tests that comparison at (1 - alpha/(m - rank)),
    so "better" goes with an interval above 0 and "no measurable difference" with one that contains 0 (up to the
    resampling's granularity), and its width says how large a difference could still hide in it.
    """
    if not comparisons:
        return []
    p = [c.p_value for c in comparisons]
    adjusted, levels = holm(p), holm_levels(p, alpha)
    out = []
    for c, p_adj, level in zip(comparisons, adjusted, levels, strict=True):
        low, high = c.interval(level)
        measurable = p_adj < alpha and c.delta != 0
        word = ("better" if c.delta > 0 else "worse") if measurable else NO_DIFFERENCE
        out.append(Verdict(c.variant, c.delta, low, high, c.p_value, float(p_adj), word))
    return out


def engagement_verdict(verdict: str, r_max: float | None, tau: float = ENGAGEMENT_TAU) -> str:
    """The verdict with the engagement said: "no measurable difference" becomes :data:`NOT_ENGAGED` (``r < τ``)
    when no attention layer reaches ``r ≥ τ`` (``r_max``: the largest per-layer median r), else
    :data:`ENGAGED_NO_DIFFERENCE`; unknown engagement (``None``) leaves it as it is. "better"/"worse" stay what the
    statistics say (a difference can be measured with weak engagement; the table shows r beside it)."""
    if verdict != NO_DIFFERENCE or r_max is None:
        return verdict
    return f"{NOT_ENGAGED} (r < {tau:g})" if r_max < tau else ENGAGED_NO_DIFFERENCE


# -------------------------------------------------------------------------------------------------- cost, gamma


def cost_columns(row: Mapping[str, Any], baseline: Mapping[str, Any]) -> dict[str, float]:
    """Δparams, ΔGFLOPs and the latency ratio of a run against the baseline run."""
    return {
        "d_params": int(row["params"]) - int(baseline["params"]),
        "d_gflops": float(row["gflops"]) - float(baseline["gflops"]),
        "latency_ratio": float(row.get("latency_ratio") or float(row["latency_ms"]) / float(baseline["latency_ms"])),
    }


def gamma_moved(gamma_rows: Sequence[Mapping[str, Any]]) -> float:
    """How far the identity-start γ moved: the largest |γ| over the inserted layers at the last logged epoch."""
    if not gamma_rows:
        return 0.0
    last = max(int(r["epoch"]) for r in gamma_rows)
    return float(max(abs(float(r["gamma"])) for r in gamma_rows if int(r["epoch"]) == last))
