"""The report's figures, drawn with matplotlib's Agg backend (no display, no fonts downloaded) as PNG bytes."""

from __future__ import annotations

import io

import numpy as np

from attnyolo.report.analysis import Analysis, epoch_curves, gamma_series, pareto_front, per_class_delta


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # headless and offline, whatever backend the user configured
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _integer_ticks():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)  # epochs are whole numbers


def _colour(i: int) -> str:
    return f"C{i % 10}"


def variant_colours(a: Analysis) -> dict[str, str]:
    """One colour per variant, the same in every figure: by grid order (the baseline first), not by Δ rank."""
    order = sorted(
        a.rows, key=lambda r: (not r.is_baseline, min((int(x.get("position") or 0) for x in r.runs), default=0))
    )
    return {r.variant: _colour(i) for i, r in enumerate(order)}


def forest(a: Analysis) -> bytes:
    """Δ mAP50-95 against the baseline with each variant's Holm-level interval; the baseline at 0."""
    plt = _pyplot()
    rows = list(reversed(a.rows))
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.4))
    for y, r in enumerate(rows):
        colour = {"better": "tab:green", "worse": "tab:red", "reference": "black"}.get(r.verdict, "tab:gray")
        if not r.is_baseline:
            ax.plot([r.low, r.high], [y, y], color=colour, lw=2)
        ax.plot([r.delta], [y], "o" if not r.is_baseline else "D", color=colour)
    ax.axvline(0, color="black", lw=0.8, ls="--")
    ax.set_yticks(range(len(rows)), [r.variant for r in rows])
    ax.set_xlabel("Δ mAP50-95 vs baseline (Holm-corrected bootstrap interval)")
    ax.set_title("Difference to the baseline")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def accuracy_vs_cost(a: Analysis) -> bytes:
    """mAP50-95 against the latency ratio and against the parameters, the Pareto front marked."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    acc = [r.map50_95[0] for r in a.rows]
    colours = variant_colours(a)
    for ax, cost, label in (
        (axes[0], [r.latency_ratio for r in a.rows], "CPU latency ratio to the baseline (batch 1)"),
        (axes[1], [r.params / 1e6 for r in a.rows], "parameters (M)"),
    ):
        for i, r in enumerate(a.rows):
            spread = r.map50_95[1] if len(r.seeds) > 1 else None  # one seed: no spread to draw
            ax.errorbar(cost[i], acc[i], yerr=spread, fmt="D" if r.is_baseline else "o", color=colours[r.variant])
            ax.annotate(r.variant, (cost[i], acc[i]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = pareto_front(cost, acc)
        ax.step([cost[i] for i in front], [acc[i] for i in front], where="post", color="black", lw=1, alpha=0.6)
        ax.set_xlabel(label)
        ax.set_ylabel("val mAP50-95 (mean ± std over seeds)")
        ax.grid(alpha=0.3)
    axes[0].set_title("Accuracy vs latency (line: Pareto front)")
    axes[1].set_title("Accuracy vs parameters (line: Pareto front)")
    return _png(fig)


def training_curves(a: Analysis) -> bytes:
    """Validation mAP50-95 per epoch: mean over seeds, band of ± one standard deviation."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    colours = variant_colours(a)
    for r in a.rows:
        x, mean, std = epoch_curves(r)
        if len(x):
            ax.plot(x, mean, marker="." if len(x) < 15 else None, label=r.variant, color=colours[r.variant])
            ax.fill_between(x, mean - std, mean + std, color=colours[r.variant], alpha=0.15)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.set_ylabel("val mAP50-95")
    ax.set_title("Validation mAP50-95 per epoch (mean, ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def per_class(a: Analysis) -> bytes:
    """Per-class AP50-95 difference of each variant against the baseline (mean over seeds)."""
    plt = _pyplot()
    variants = [r for r in a.rows if not r.is_baseline]
    deltas = {r.variant: per_class_delta(r, a.baseline) for r in variants}
    classes = sorted({c for d in deltas.values() for c in d})
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(classes) + 2), 4.0))
    width = 0.8 / max(len(variants), 1)
    colours = variant_colours(a)
    for i, r in enumerate(variants):
        xs = np.arange(len(classes)) + (i - (len(variants) - 1) / 2) * width
        heights = [deltas[r.variant].get(c, 0.0) for c in classes]
        ax.bar(xs, heights, width, label=r.variant, color=colours[r.variant])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_ylabel("Δ AP50-95 vs baseline")
    ax.set_title("Per-class difference")
    ax.grid(axis="y", alpha=0.3)
    if variants:
        ax.legend(fontsize=7)
    return _png(fig)


def gamma(a: Analysis) -> bytes | None:
    """γ of every inserted layer over the epochs, one panel per variant (None when no run logged γ)."""
    plt = _pyplot()
    series = {r.variant: gamma_series(r) for r in a.rows if not r.is_baseline}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    cols = min(3, len(series))
    rows = -(-len(series) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False, sharey=True)
    for ax, (name, layers) in zip(axes.ravel(), series.items(), strict=False):
        for j, (layer, (x, g)) in enumerate(layers.items()):
            ax.plot(x, g, marker=".", label=f"layer {layer}", color=_colour(j))
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(_integer_ticks())
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(series) :]:
        ax.axis("off")
    axes[0, 0].set_ylabel("γ (mean over seeds)")
    fig.suptitle("How much each inserted attention is used: γ per layer (output = x + γ·(attn(x) − x))", fontsize=10)
    return _png(fig)


def all_figures(a: Analysis) -> dict[str, bytes]:
    """Every figure of the report, by file stem, in the order the report shows them."""
    figures = {
        "forest": forest(a),
        "accuracy_vs_cost": accuracy_vs_cost(a),
        "training_curves": training_curves(a),
        "per_class": per_class(a),
    }
    g = gamma(a)
    if g is not None:
        figures["gamma"] = g
    return figures
