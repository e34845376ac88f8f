"""``SEARCH_DIR/report.md``: what the search tried, what each rung kept, what each candidate cost, the Pareto front
of what survived the cost limits, and the verdicts of the confirmation grid, which are the search's result.

Rung scores are single short runs (one seed, a few epochs of a longer schedule, no interval): the report says so
next to every number drawn from them, and draws no conclusion from them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attnyolo.atomic import write_atomically
from attnyolo.report import Analysis
from attnyolo.report.analysis import control_warnings, pareto_front
from attnyolo.report.render import HEADERS, table_rows
from attnyolo.search.candidates import Candidate
from attnyolo.search.schedule import Schedule
from attnyolo.search.store import SearchStore

REPORT = "report.md"
SINGLE_RUNS = (
    "**Rung scores are single short runs**: one seed, the first rungs only a few epochs into a longer schedule, no "
    "interval. They rank candidates for the confirmation; they are not evidence that any attention helps. The "
    "search's result is the confirmation's verdict table (several seeds, paired bootstrap intervals, Holm)."
)
VERDICT_COLUMNS = (
    "variant",
    "Δparams",
    "ΔGFLOPs",
    "mAP50-95 (mean ± std)",
    "Δ mAP50-95 [interval]",
    "verdict",
    "seeds",
)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def _lead_in_text(lead: int) -> str:
    if not lead:
        return ""
    return (
        f" (counted after a {lead}-epoch lead-in that every run trains first: the attention warm-up or frozen base, "
        f"where the candidates barely differ; a run's epochs are {lead} + its rung's)"
    )


def rung_counts(rows: list[dict], schedule: Schedule) -> list[tuple[int, int, int | None]]:
    """``(epochs, candidates scored at the rung, how many of them went on to the next rung)`` per rung."""
    at = [{r["label"] for r in rows if r["rung"] == k} for k in range(len(schedule.rungs))]
    return [
        (epochs, len(at[k]), len(at[k] & at[k + 1]) if k + 1 < len(at) else None)
        for k, epochs in enumerate(schedule.rungs)
    ]


def pareto_lines(candidates: list[dict], rows: list[dict]) -> list[str]:
    """The candidates no other beats on (first-rung mAP50-95, added params) and on (mAP50-95, GFLOPs): the first rung
    is the one every candidate that trained has, at the same epoch."""
    first = {r["label"]: r["map50_95"] for r in rows if r["rung"] == 0}
    trained = [c for c in candidates if c["label"] in first]
    if not trained:
        return ["No candidate finished its first rung."]
    out = []
    for cost, name in (("added_params", "added params"), ("gflops_ratio", "GFLOPs ×")):
        front = pareto_front([float(c[cost]) for c in trained], [first[c["label"]] for c in trained])

        def shown(c: dict, cost: str = cost) -> str:
            return f"{c[cost]:+,} params" if cost == "added_params" else f"GFLOPs ×{c[cost]:.4f}"

        items = ", ".join(
            f"{trained[i]['label']} ({first[trained[i]['label']]:.4f} at {shown(trained[i])})" for i in front
        )
        out.append(f"- mAP50-95 (first rung) vs {name}: {items}")
    return out


def verdict_lines(analysis: Analysis | None, chosen: list[str], names: Mapping[str, str]) -> list[str]:
    """The confirmation's verdict table; ``names``: ablate's variant label -> the search's (``se@inside``)."""
    if analysis is None:
        return [f"Not run yet (top candidates: {', '.join(chosen) or 'none'})."]
    keep = [HEADERS.index(h) for h in VERDICT_COLUMNS]
    rows = [[cells[i] for i in keep] for cells in table_rows(analysis)]
    for row in rows:
        row[0] = names.get(row[0], row[0])
    seeds = len(analysis.baseline.seeds)
    return [
        f"The top {len(chosen)} against the control (the base architecture, same start and recipe), {seeds} seeds, "
        f"{analysis.resamples:,} paired bootstrap resamples, Holm-adjusted at α = {analysis.alpha}: "
        f"[{analysis.folder.name}/report.md]({analysis.folder.name}/report.md). The candidates were chosen on the same "
        "validation images, so a selected candidate's gain is an optimistic estimate (the winner's curse); the "
        "confirmation's seeds differ from the rungs' seed, so no rung run is reused.",
        "",
        *_table(list(VERDICT_COLUMNS), rows),
        *[f"\nWarning: {w}" for w in control_warnings(analysis)],
    ]


def write_search_report(
    folder: Path,
    store: SearchStore,
    schedule: Schedule,
    config: Mapping[str, Any],
    ranking: list[dict],
    chosen: list[str],
    analysis: Analysis | None,
    failed: Mapping[str, str] | None = None,
) -> Path:
    """Write ``folder/report.md`` from the store and the confirmation's analysis; return its path."""
    candidates, rows = store.candidates(), store.rungs()
    args = config["arguments"]
    pruned = [c for c in candidates if c["pruned"]]
    by_label = {(r["label"], r["rung"]): r["map50_95"] for r in rows}
    start = args["weights"] or args["model"]
    names = {Candidate(c["attention"], c["place"]).variant.label: c["label"] for c in candidates}
    furthest = {r["label"]: r["epoch"] for r in ranking}
    lines = [
        "# attnyolo search: which attention, where",
        "",
        f"{len(candidates)} candidates ({', '.join(dict.fromkeys(c['attention'] for c in candidates))} × "
        f"{', '.join(dict.fromkeys(c['place'] for c in candidates))}) on `{args['data']}` from `{start}`, "
        f"recipe {config['grid']['recipe']}; Ray Tune's ASHA (asynchronous successive halving) with rungs at epochs "
        f"{list(schedule.rungs)}{_lead_in_text(schedule.lead_in)}, η = {schedule.eta}, every rung run with "
        f"seed {args['seed']}.",
        "",
        SINGLE_RUNS,
        "",
        "## Confirmation: the verdicts",
        "",
        *verdict_lines(analysis, chosen, names),
        "",
        "## Rungs",
        "",
        f"Cost limits: {_limits(args)}; {len(pruned)} of {len(candidates)} candidates pruned before training.",
        "",
        plan_line(schedule, len(candidates) - len(pruned), ranking),
        "",
        *_table(
            ["rung", "epochs", "candidates scored", "kept (went on)"],
            [[k, e, n, "-" if kept is None else kept] for k, (e, n, kept) in enumerate(rung_counts(rows, schedule))],
        ),
        "",
        "## Candidates",
        "",
        "mAP50-95 at each rung: single short runs (see above).",
        "",
        *_table(
            [
                "candidate",
                "added params",
                "GFLOPs ×",
                "latency ×",
                *[f"mAP50-95 @ {e} ep" for e in schedule.rungs],
                "furthest rung (epochs)",
                "pruned by",
            ],
            [
                [
                    c["label"],
                    f"{c['added_params']:+,}",
                    f"{c['gflops_ratio']:.4f}",
                    "-" if c["latency_ratio"] is None else f"{c['latency_ratio']:.3f}",
                    *[_score(by_label.get((c["label"], k))) for k in range(len(schedule.rungs))],
                    furthest.get(c["label"], 0),
                    c["pruned"] or ("-" if c["label"] not in (failed or {}) else f"failed: {failed[c['label']]}"),
                ]
                for c in candidates
            ],
        ),
        "",
        "## Pareto front of the candidates that trained",
        "",
        *pareto_lines([c for c in candidates if not c["pruned"]], rows),
        "",
        "## Ranking after the rungs",
        "",
        *[
            f"{i + 1}. {r['label']}: rung {r['rung']} ({r['epoch']} epoch(s)), mAP50-95 {r['map50_95']:.4f}"
            + (" (confirmed below)" if r["label"] in chosen else "")
            for i, r in enumerate(ranking)
        ],
        "",
        f"Resume (or redraw this report) with `attnyolo search -o {folder} --resume`; the confirmation grid alone: "
        f"`attnyolo report {folder / 'confirm'}`.",
        "",
    ]
    path = folder / REPORT
    write_atomically(path, lambda tmp: tmp.write_text("\n".join(lines)))
    return path


def plan_line(schedule: Schedule, n: int, ranking: list[dict]) -> str:
    """The successive-halving plan over ``n`` candidates next to what ASHA trained (each candidate up to its furthest
    rung; ASHA is asynchronous, so the candidates that come first may go further than the plan)."""
    kept = [math.ceil(n / schedule.eta**k) for k in range(len(schedule.rungs))]
    trained = sum(r["epoch"] for r in ranking)
    return (
        f"Plan: candidates per rung {kept} if every rung kept exactly 1/η ({schedule.planned_epochs(n)} epochs); "
        f"trained: {trained} epochs up to the furthest rungs."
    )


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _limits(args: Mapping[str, Any]) -> str:
    parts = [
        f"{name} {args[key]}"
        for key, name in (("max_params", "added params ≤"), ("max_gflops_ratio", "GFLOPs ≤ ×"),
                          ("max_latency_ratio", "latency ≤ ×"))
        if args.get(key) is not None
    ]  # fmt: skip
    return ", ".join(parts) or "none"
