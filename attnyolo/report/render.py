"""``report.md`` and the self-contained ``report.html`` (figures embedded as base64 PNGs: opens offline)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from attnyolo.atomic import write_atomically
from attnyolo.report.analysis import Analysis, VariantRow, control_warnings, describe, stored_vs_curves, val_commands
from attnyolo.report.stats import ENGAGEMENT_TAU

HEADERS = (
    "variant",
    "placement",
    "params",
    "Δparams",
    "GFLOPs",
    "ΔGFLOPs",
    "latency ×",
    "mAP50-95 (mean ± std)",
    "Δ mAP50-95 [interval]",
    "verdict",
    "max |γ|",
    "engagement r",
    "seeds",
)

CAPTIONS = {
    "forest": "Δ mAP50-95 against the baseline. Bars: paired bootstrap interval over validation images and seeds, "
    "at the Holm-corrected level; a verdict other than 'no measurable difference' needs the bar to exclude 0.",
    "accuracy_vs_cost": "Accuracy against cost. Latency is the CPU batch-1 median, as a ratio to the baseline measured "
    "interleaved in the same process. The line joins the Pareto front (nothing is cheaper and more accurate).",
    "training_curves": "Validation mAP50-95 after each epoch (mean over seeds, band ± one standard deviation), from "
    "each run's results.csv: Ultralytics' validation of the fp32 EMA weights in memory. The table's numbers are "
    "best.pt's, whose weights Ultralytics stores in fp16 (see 'Where the numbers come from').",
    "per_class": "Per-class AP50-95 of each variant minus the baseline's (mean over seeds).",
    "gallery": "Validation images, baseline against {variant} (both the baseline's first seed): each model's boxes, "
    "their EigenCAMs on the layers the head reads, the CAM difference, and the variant's first spatial attention map "
    "(drawn by attnyolo viz).",
    "gamma": "γ of each inserted layer after each epoch (identity start: γ = 0 at epoch 0). A γ that stays near 0 "
    "means the attention is barely used; a 'no measurable difference' with γ far from 0 is a real null result.",
}


ENGAGEMENT_NOTE = (
    "Engagement r = ‖out − in‖ / ‖in‖ of each attention layer on best.pt, median over the validation images "
    "(mean over seeds): 0 at the identity start. The column shows the median over the layers and, in brackets, the "
    f"largest layer's; 'not engaged' means every layer stayed below τ = {ENGAGEMENT_TAU:g}. 'unknown': runs "
    "measured before attnyolo stored engagement."
)


def engagement_cell(r: VariantRow) -> str:
    """``0.0800 (max 0.9800)``: median and max over the layers of the per-layer median r; ``unknown`` without it."""
    if r.is_baseline or not r.attention:
        return "-"
    if r.r_median is None:
        return "unknown"
    return f"{r.r_median:.4f} (max {r.r_max:.4f})"


def caption_of(stem: str) -> str:
    """A figure's caption; the gallery's figures (``gallery-<variant>``) share one."""
    if stem.startswith("gallery-"):
        return CAPTIONS["gallery"].format(variant=stem.removeprefix("gallery-"))
    return CAPTIONS.get(stem, "")


def table_rows(a: Analysis) -> list[list[str]]:
    """The verdict table as strings, sorted by Δ (the order of :attr:`Analysis.rows`)."""
    out = []
    for r in a.rows:
        if r.is_baseline:
            delta, dp, dg, gamma = "0 (reference)", "-", "-", "-"
        else:
            delta = f"{r.delta:+.4f} [{r.low:+.4f}, {r.high:+.4f}]"
            dp, dg, gamma = f"{r.d_params:+,}", f"{r.d_gflops:+.3f}", f"{r.gamma_moved:.4f}"
        verdict = r.verdict
        if verdict not in ("better", "worse", "reference") and r.high > r.low:
            width = f"interval width {r.high - r.low:.4f}"
            # "... (r < 0.05)" takes the width inside its brackets: one bracket, not two in a row
            verdict = f"{verdict[:-1]}; {width})" if verdict.endswith(")") else f"{verdict} ({width})"
        out.append(
            [
                r.variant,
                r.placement,
                f"{r.params:,}",
                dp,
                f"{r.gflops:.3f}",
                dg,
                f"{r.latency_ratio:.2f}",
                _mean_std(r.map50_95, len(r.seeds)),
                delta,
                verdict,
                gamma,
                engagement_cell(r),
                ",".join(str(s) for s in r.seeds),
            ]
        )
    return out


def _mean_std(value: tuple[float, float], seeds: int) -> str:
    """``0.4284 ± 0.0031`` over seeds; one seed has no spread to show (not ``± 0.0000``)."""
    mean, std = value
    return f"{mean:.4f} ± {std:.4f}" if seeds > 1 else f"{mean:.4f} (1 seed)"


def host_of(a: Analysis) -> str:
    """The detection codebase that trained and validated the grid's runs (``ultralytics`` unless the grid says)."""
    return str(a.grid.get("config", {}).get("host") or "ultralytics")


def _title(a: Analysis) -> str:
    host = host_of(a)
    return f"attnyolo report: {a.folder.name}" + ("" if host == "ultralytics" else f" (host: {host})")


YOLOV5_SOURCES = [
    "Table (mAP50, mAP50-95): each run's weights/best.pt validated by YOLOv5 v7.0's own val.py as its train.py "
    "validates it at the end of training ('Validating best.pt...': twice the training batch, rect batches, fp16 on "
    "a GPU), so they equal YOLOv5's own final numbers. Δ, its interval and the verdicts are computed from the "
    "per-image matches of that same validation (val_stats.npz, YOLOv5's process_batch) with the report's AP (COCO "
    "101-point, as Ultralytics 8 computes it), which differs slightly from YOLOv5 v7.0's AP (v7.0 extends the "
    "precision envelope from the last recall to recall 1): the direction and size of a difference are the same "
    "measurement, the absolute numbers of the two definitions are not interchangeable.",
    "Curves: runs/<run_id>/results.csv, YOLOv5's validation after each epoch of the EMA weights in memory; the "
    "store renames its columns to Ultralytics' (metrics/mAP_0.5:0.95 -> metrics/mAP50-95(B), epoch counted from 1).",
]


def source_lines(a: Analysis) -> list[str]:
    """Where the table's and the curves' numbers come from, and the command that reproduces each run's."""
    commands = val_commands(a)
    if host_of(a) == "yolov5":
        lines = [
            YOLOV5_SOURCES[0],
            f"Run inside {a.folder}, the command of a run prints its numbers again (on a GPU; on the CPU YOLOv5's "
            "val.py keeps the fused weights in fp32 where train.py rounds them to fp16, so the last digits differ):",
        ]
        lines += [f"{run_id}: `{command}`" if command else f"{run_id}: not recorded" for run_id, command in commands]
        return [*lines, YOLOV5_SOURCES[1]]
    lines = [
        "Table (mAP50-95 and the per-image statistics behind Δ and the verdicts): each run's weights/best.pt "
        "validated as Ultralytics' trainer validates it at the end of training (its validation batch, rect "
        "batches, its precision), so it equals the trainer's own final validation ('Validating best.pt...'). "
        f"Run inside {a.folder}, the command of a run prints its numbers again:"
    ]
    lines += [f"{run_id}: `{command}`" if command else f"{run_id}: not recorded" for run_id, command in commands]
    if any(c is None for _, c in commands):
        lines.append(
            "Runs without a recorded command were made by an older attnyolo, which validated best.pt at the "
            "training batch: `attnyolo yolo val model=runs/<run_id>/weights/best.pt data=DATA imgsz=IMGSZ batch=BATCH`"
        )
    gap = stored_vs_curves(a)
    curves = (
        "Curves: runs/<run_id>/results.csv, Ultralytics' validation after each epoch of the EMA weights in memory "
        "(fp32). best.pt holds the best epoch's EMA weights rounded to fp16, so the table and the curves' points "
        "differ by that rounding (and where the best epoch is not the last)"
    )
    lines.append(curves + (f": here by up to {gap[0]:.4f} ({gap[1]})." if gap else "."))
    return lines


def _meta_lines(a: Analysis) -> list[tuple[str, str]]:
    g, config = a.grid, a.grid.get("config", {})
    start = config.get("weights") or config.get("model") or "-"
    wall = float(g.get("wall_seconds") or 0.0)
    return [
        ("host", host_of(a) + (f" (YOLOv5 at {config['yolov5']})" if config.get("yolov5") else "")),
        ("data", str(config.get("data", "-"))),
        ("start", f"{start} (transfer + identity start for every variant)" if config.get("weights") else str(start)),
        ("recipe (shared by every run)", describe(config.get("recipe", {}))),
        ("seeds", describe(config.get("seeds", "-"))),
        (
            "statistics",
            f"paired bootstrap over validation images and seed pairs, {a.resamples:,} resamples, "
            f"percentile intervals, Holm correction over {sum(not r.is_baseline for r in a.rows)} comparisons "
            f"at α = {a.alpha}",
        ),
        ("versions", describe(g.get("versions", {}))),
        ("machine", describe(g.get("machine", {}))),
        ("git revision", str(g.get("git_rev") or "-")),
        ("created / finished", f"{g.get('created', '-')} / {g.get('finished') or 'not finished'}"),
        ("wall time", f"{wall:.0f} s ({wall / 60:.1f} min)"),
    ]


def _summary(a: Analysis) -> str:
    better = [r.variant for r in a.rows if r.verdict == "better"]
    worse = [r.variant for r in a.rows if r.verdict == "worse"]
    parts = []
    if better:
        parts.append(f"measurably better than the baseline: {', '.join(better)}")
    if worse:
        parts.append(f"measurably worse: {', '.join(worse)}")
    if not parts:
        parts.append("no variant is measurably better or worse than the baseline at this budget")
    return "; ".join(parts) + "."


def _atomic_write(path: Path, data: bytes) -> None:
    write_atomically(path, lambda tmp: tmp.write_bytes(data))


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")  # a pipe inside a cell would end it


def markdown(a: Analysis, figure_dir: str, stems: list[str], notes: list[str] = ()) -> str:
    """``report.md``: the verdict table, the figures (PNG files beside it), the reproduction details."""
    lines = [f"# {_title(a)}", ""]
    lines += [f"> **Warning:** {w}\n" for w in control_warnings(a)]
    lines += [_summary(a), "", "## Verdicts", ""]
    lines.append("| " + " | ".join(_md_cell(h) for h in HEADERS) + " |")
    lines.append("|" + "---|" * len(HEADERS))
    lines += ["| " + " | ".join(_md_cell(c) for c in cells) + " |" for cells in table_rows(a)]
    lines += ["", ENGAGEMENT_NOTE]
    if a.missing:
        lines += ["", f"Not included (not finished): {', '.join(a.missing)}"]
    for stem in stems:
        lines += ["", f"![{stem}]({figure_dir}/{stem}.png)", "", caption_of(stem)]
    lines += [f"\nNote: {n}" for n in notes]
    lines += ["", "## Where the numbers come from", ""]
    lines += [f"- {line}" for line in source_lines(a)]
    lines += ["", "## Reproduce", ""]
    lines += [f"- **{k}**: {v}" for k, v in _meta_lines(a)]
    lines += ["", f"Redraw: `attnyolo report {a.folder}`", ""]
    return "\n".join(lines)


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1400px;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:4px 7px;text-align:right}
td:first-child,th:first-child,td:nth-child(2),th:nth-child(2),td:nth-child(10),th:nth-child(10){text-align:left}
td:nth-child(8),td:nth-child(9),td:nth-child(12){white-space:nowrap}td:nth-child(10){min-width:14em}
tr.better td{background:#e6f5e6}tr.worse td{background:#fbe4e4}tr.reference td{font-weight:bold}
figure{margin:1.5em 0}figcaption{font-size:13px;color:#555;max-width:900px}img{max-width:100%}
.warning{background:#fff3cd;border:1px solid #e0b000;padding:8px 12px}
dl{display:grid;grid-template-columns:max-content auto;gap:3px 14px;font-size:13px}dt{font-weight:bold}"""


def _code_html(line: str) -> str:
    """A line with `backticked` commands as <code>, the rest escaped."""
    parts = line.split("`")
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def html_page(a: Analysis, figures: dict[str, bytes], notes: list[str] = ()) -> str:
    """``report.html``: one file, figures as base64 data URIs, no script, no external resource."""
    esc = html.escape
    rows = []
    for r, cells in zip(a.rows, table_rows(a), strict=True):
        cls = r.verdict if r.verdict in ("better", "worse", "reference") else "none"
        rows.append(f'<tr class="{cls}">' + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(_title(a))}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(_title(a))}</h1>",
        *(f'<p class="warning"><b>Warning:</b> {esc(w)}</p>' for w in control_warnings(a)),
        f"<p>{esc(_summary(a))}</p>",
        "<h2>Verdicts</h2><table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in HEADERS) + "</tr></thead>",
        "<tbody>" + "".join(rows) + "</tbody></table>",
    ]
    parts.append(f"<p>{esc(ENGAGEMENT_NOTE)}</p>")
    parts += engagement_html(a)
    if a.missing:
        parts.append(f"<p>Not included (not finished): {esc(', '.join(a.missing))}</p>")
    for stem, png in figures.items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f'<figure><img alt="{esc(stem)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(caption_of(stem))}</figcaption></figure>"
        )
    parts += [f"<p>Note: {esc(n)}</p>" for n in notes]
    parts.append("<h2>Where the numbers come from</h2><ul>")
    parts += [f"<li>{_code_html(line)}</li>" for line in source_lines(a)]
    parts.append("</ul>")
    parts.append("<h2>Reproduce</h2><dl>")
    parts += [f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in _meta_lines(a)]
    parts.append(f"</dl><p>Redraw: <code>attnyolo report {esc(str(a.folder))}</code></p></body></html>")
    return "\n".join(parts)


ENGAGEMENT_LAYER_HEADERS = ("layer", "attention", "r median", "r max", "γ")


def engagement_html(a: Analysis) -> list[str]:
    """Per variant, a small table of its attention layers: label, attention, r median (over the images, mean over
    seeds), r max (over the images and seeds), γ at the last epoch (mean over seeds)."""
    esc = html.escape
    variants = [r for r in a.rows if not r.is_baseline and r.attention]
    if not variants:
        return []
    parts = ["<h2>Engagement per layer</h2>"]
    for r in variants:
        parts.append(f"<h3>{esc(r.variant)}</h3>")
        if not r.engagement:
            parts.append("<p>unknown (no engagement stored for its runs)</p>")
            continue
        head = "".join(f"<th>{esc(h)}</th>" for h in ENGAGEMENT_LAYER_HEADERS)
        body = "".join(
            "<tr>"
            + "".join(
                f"<td>{esc(c)}</td>"
                for c in (
                    layer.label,
                    layer.attention,
                    f"{layer.r_median:.4f}",
                    f"{layer.r_max:.4f}",
                    "-" if layer.gamma is None else f"{layer.gamma:+.4f}",
                )
            )
            + "</tr>"
            for layer in r.engagement
        )
        parts.append(f'<table class="engagement"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
    return parts


def write(a: Analysis, figures: dict[str, bytes], notes: list[str] = ()) -> tuple[Path, Path]:
    """Write ``report.md`` (+ ``report_figures/*.png``) and ``report.html`` into the grid folder, atomically."""
    fig_dir = a.folder / "report_figures"
    fig_dir.mkdir(exist_ok=True)
    for stem, png in figures.items():
        _atomic_write(fig_dir / f"{stem}.png", png)
    md, page = a.folder / "report.md", a.folder / "report.html"
    _atomic_write(md, markdown(a, fig_dir.name, list(figures), notes).encode())
    _atomic_write(page, html_page(a, figures, notes).encode())
    return md, page
