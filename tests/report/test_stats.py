"""attnyolo.report.stats on hand-made per-image data: exactness against Ultralytics' AP, bootstrap, Holm, verdicts."""

from __future__ import annotations

import numpy as np
import pytest

import attnyolo  # noqa: F401  (offline switches before Ultralytics)
from attnyolo.report import stats


def toy(rng: np.random.Generator, n_img: int = 20, nc: int = 3, hit: float = 0.6, extra: int = 3) -> dict:
    """Validator-like per-image data: each target matched by at most one prediction per IoU threshold.

    Per image: 2-5 targets per class; each target is found with probability ``hit`` (the number of IoU thresholds
    it passes is random, as for real boxes); ``extra`` false positives per image. Found targets get higher
    confidences on average than false positives.
    """
    tp, conf, pred_cls, pred_img, target_cls, target_img = [], [], [], [], [], []
    for i in range(n_img):
        for c in range(nc):
            n_t = int(rng.integers(2, 6))
            target_cls += [c] * n_t
            target_img += [i] * n_t
            for _ in range(n_t):
                if rng.random() < hit:
                    k = int(rng.integers(1, 11))  # passes the first k IoU thresholds
                    tp.append(np.arange(10) < k)
                    conf.append(rng.uniform(0.3, 1.0))
                    pred_cls.append(c)
                    pred_img.append(i)
        for _ in range(extra):
            tp.append(np.zeros(10, bool))
            conf.append(rng.uniform(0.0, 0.8))
            pred_cls.append(int(rng.integers(nc)))
            pred_img.append(i)
    return {
        "tp": np.array(tp, bool),
        "conf": np.array(conf, np.float32),
        "pred_cls": np.array(pred_cls, np.int32),
        "pred_img": np.array(pred_img, np.int32),
        "target_cls": np.array(target_cls, np.int32),
        "target_img": np.array(target_img, np.int32),
        "images": np.array([f"im{i:03d}.jpg" for i in range(n_img)]),
    }


def materialised_map(s: dict, w: np.ndarray) -> float:
    """The slow reference: copy every image w[i] times and run Ultralytics' ap_per_class on the copies."""
    from ultralytics.utils.metrics import ap_per_class

    w = w.astype(int)
    p = np.repeat(np.arange(len(s["conf"])), w[s["pred_img"]])
    t = np.repeat(np.arange(len(s["target_cls"])), w[s["target_img"]])
    if len(t) == 0:
        return 0.0
    return float(ap_per_class(s["tp"][p], s["conf"][p], s["pred_cls"][p], s["target_cls"][t])[5].mean())


def test_resampled_map_equals_ultralytics_on_copied_images():
    rng = np.random.default_rng(0)
    s = toy(rng)
    n = len(s["images"])
    w = rng.multinomial(n, np.full(n, 1 / n), size=40).astype(float)
    w[0] = 1.0  # the original sample
    w[1, : n // 2] = 0.0  # whole halves missing
    fast = stats.ResampledMAP(s, n)(w)
    slow = np.array([materialised_map(s, row) for row in w])
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
    assert fast[0] == pytest.approx(stats.map_ultralytics(s)[1], abs=1e-12)


def test_resampled_map_class_absent_from_a_resample():
    rng = np.random.default_rng(1)
    s = toy(rng, n_img=6)
    keep = ~((s["target_cls"] == 2) & (s["target_img"] < 3))  # class 2 has targets in images 3-5 only
    s["target_cls"], s["target_img"] = s["target_cls"][keep], s["target_img"][keep]
    s["tp"][(s["pred_cls"] == 2) & (s["pred_img"] < 3)] = False
    w = np.array([[2, 2, 2, 0, 0, 0], [1, 0, 0, 0, 4, 1]], float)
    np.testing.assert_allclose(stats.ResampledMAP(s, 6)(w), [materialised_map(s, r) for r in w], atol=1e-12)


def test_identical_models_give_zero_and_no_difference():
    s = toy(np.random.default_rng(2))
    comp = stats.paired_bootstrap([s, s], [s, s], resamples=500, seed=0, name="same")
    assert comp.delta == 0.0
    assert np.all(comp.deltas == 0.0)
    (v,) = stats.verdicts([comp])
    assert v.verdict == stats.NO_DIFFERENCE
    assert v.low == v.high == 0.0


def _improved(s: dict) -> dict:
    """The same predictions plus one extra true positive per image: a target no prediction found before."""
    out = {k: v.copy() for k, v in s.items()}
    add = {"tp": [], "conf": [], "pred_cls": [], "pred_img": []}
    for i in range(len(s["images"])):
        counts = {c: int(np.sum((s["target_img"] == i) & (s["target_cls"] == c))) for c in range(3)}
        hits = {c: int(np.sum(s["tp"][:, 0] & (s["pred_img"] == i) & (s["pred_cls"] == c))) for c in range(3)}
        c = next(c for c in range(3) if hits[c] < counts[c])  # a class with a missed target on this image
        add["tp"].append(np.ones(10, bool))
        add["conf"].append(0.99)
        add["pred_cls"].append(c)
        add["pred_img"].append(i)
    for k, v in add.items():
        out[k] = np.concatenate([out[k], np.array(v, dtype=out[k].dtype).reshape(len(v), *out[k].shape[1:])])
    return out


def test_more_true_positives_on_every_image_is_better_and_fewer_is_worse():
    s = toy(np.random.default_rng(3), hit=0.5)
    better = _improved(s)
    comps = stats.bootstrap({"more": [better], "fewer": [s]}, [s], resamples=2000, seed=0)
    assert comps[0].delta > 0 and np.all(comps[0].deltas > 0)
    worse = stats.bootstrap({"fewer": [s]}, [better], resamples=2000, seed=0)[0]
    verdict = {v.variant: v for v in stats.verdicts([comps[0], worse])}
    assert verdict["more"].verdict == "better" and verdict["more"].low > 0
    assert verdict["fewer"].verdict == "worse" and verdict["fewer"].high < 0


def test_bootstrap_interval_matches_a_slow_loop():
    rng = np.random.default_rng(4)
    base = toy(rng, n_img=15)
    var = toy(rng, n_img=15, hit=0.7)
    fast = stats.paired_bootstrap([var], [base], resamples=10_000, seed=5)
    loop_rng = np.random.default_rng(6)
    slow = []
    for _ in range(400):  # one image resample at a time, both models on the same copies
        idx = loop_rng.integers(0, 15, 15)
        w = np.bincount(idx, minlength=15)
        slow.append(materialised_map(var, w) - materialised_map(base, w))
    lo, hi = fast.interval(0.1)
    slo, shi = np.quantile(slow, [0.05, 0.95])
    width = hi - lo
    # Monte-Carlo error of a 5 % quantile from 400 draws is about 0.1 interval widths; allow 0.25
    assert abs(lo - slo) < 0.25 * width and abs(hi - shi) < 0.25 * width
    assert np.mean(slow) == pytest.approx(np.mean(fast.deltas), abs=0.1 * width)


def test_seed_pairs_are_resampled():
    rng = np.random.default_rng(7)
    runs = [toy(rng, n_img=10) for _ in range(4)]
    comp = stats.paired_bootstrap(runs[:2], runs[2:], resamples=300, seed=0)
    observed = [
        stats.map_ultralytics(a)[1] - stats.map_ultralytics(b)[1] for a, b in zip(runs[:2], runs[2:], strict=True)
    ]
    assert comp.delta == pytest.approx(np.mean(observed))
    with pytest.raises(stats.StatsError, match="same seeds"):
        stats.paired_bootstrap(runs[:2], runs[2:3])


def test_bootstrap_values_do_not_depend_on_the_thread_count():
    rng = np.random.default_rng(8)
    runs = [toy(rng, n_img=12) for _ in range(6)]
    variants = {"a": runs[:2], "b": runs[2:4]}
    one = stats.bootstrap(variants, runs[4:], resamples=300, seed=3, threads=1)
    many = stats.bootstrap(variants, runs[4:], resamples=300, seed=3, threads=4)
    for x, y in zip(one, many, strict=True):
        assert (x.variant, x.delta, x.p_value) == (y.variant, y.delta, y.p_value)
        np.testing.assert_array_equal(x.deltas, y.deltas)
    # and each comparison equals the variant bootstrapped alone (same draws: same seed, same first variant)
    alone = stats.bootstrap({"a": runs[:2]}, runs[4:], resamples=300, seed=3, threads=1)[0]
    np.testing.assert_array_equal(alone.deltas, one[0].deltas)


def test_holm_hand_checked():
    # sorted p: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(stats.holm_levels([0.01, 0.04, 0.03, 0.005], 0.05), [0.05 / 3, 0.05, 0.05 / 2, 0.05 / 4])
    assert stats.holm([0.5, 0.9])[1] == 1.0


def test_mean_std_cost_and_gamma():
    assert stats.mean_std([1.0, 3.0]) == (2.0, pytest.approx(np.sqrt(2)))
    assert stats.mean_std([0.4]) == (0.4, 0.0)
    row = {"params": 1100, "gflops": 8.5, "latency_ms": 12.0, "latency_ratio": 1.2}
    base = {"params": 1000, "gflops": 8.0, "latency_ms": 10.0}
    assert stats.cost_columns(row, base) == {"d_params": 100, "d_gflops": 0.5, "latency_ratio": 1.2}
    gamma = [{"epoch": 0, "layer": 16, "gamma": 0.0}, {"epoch": 2, "layer": 16, "gamma": -0.2}]
    gamma.append({"epoch": 2, "layer": 19, "gamma": 0.1})
    assert stats.gamma_moved(gamma) == pytest.approx(0.2)
    with pytest.raises(stats.StatsError, match="lack"):
        stats.check_stats({"tp": np.zeros((0, 10))})


def test_a_positive_delta_with_a_large_holm_p_is_no_measurable_difference():
    # raw p-values 0.03 and 0.04 are below alpha, but Holm's adjusted ones (0.06, 0.06) are not: Δ > 0 alone
    # must not make a verdict
    spread = np.linspace(-0.01, 0.05, 1001)
    comps = [stats.Comparison("a", 0.02, spread, 0.03), stats.Comparison("b", 0.01, spread - 0.01, 0.04)]
    out = stats.verdicts(comps, alpha=0.05)
    assert [v.verdict for v in out] == [stats.NO_DIFFERENCE, stats.NO_DIFFERENCE]
    np.testing.assert_allclose([v.p_holm for v in out], [0.06, 0.06])
    (large,) = stats.verdicts([stats.Comparison("c", 0.3, spread, 0.8)])
    assert large.verdict == stats.NO_DIFFERENCE
    (small,) = stats.verdicts([stats.Comparison("d", 0.02, spread, 0.001)])
    assert small.verdict == "better"
    (negative,) = stats.verdicts([stats.Comparison("e", -0.02, spread, 0.001)])
    assert negative.verdict == "worse"


def test_interval_quantiles_are_exact_on_a_known_distribution():
    # 81 resampled differences 0, 1, ..., 80: numpy's linear quantile q sits at position 80 q, so the 90 %
    # interval (alpha = 0.1) is [80 * 0.05, 80 * 0.95] = [4, 76] exactly
    comp = stats.Comparison("v", 40.0, np.arange(81.0), 0.5)
    assert comp.interval(0.1) == (4.0, 76.0)
    assert comp.interval(0.5) == (20.0, 60.0)
    # Holm's levels: the smaller p is tested at alpha / 2 = 0.025, so its interval is the 97.5 % one,
    # quantiles 0.0125 and 0.9875 at positions 1 and 79; the other at alpha = 0.05: positions 2 and 78
    shuffled = np.random.default_rng(0).permutation(np.arange(81.0))  # order of the draws must not matter
    first, second = stats.verdicts(
        [stats.Comparison("x", 1.0, shuffled, 0.001), stats.Comparison("y", 1.0, shuffled, 0.5)]
    )
    assert (first.low, first.high) == (1.0, 79.0)
    assert (second.low, second.high) == (2.0, 78.0)
