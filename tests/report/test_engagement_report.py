"""Engagement in the verdicts and the report: "attention not engaged at this budget (r < τ)" against "engaged; no
measurable difference" on hand-made engagement rows added to the fixture grid, the r column of the table and
report.md, the per-layer tables of report.html, and an old (schema 1) database read as unknown without a write."""

from __future__ import annotations

import html
import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from attnyolo.experiments.store import ResultsStore
from attnyolo.report import analyse, stats, write_report
from attnyolo.report.render import HEADERS, table_rows

FIXTURE = Path(__file__).parent / "fixtures" / "grid"
SCHEMA1 = Path(__file__).parents[1] / "experiments" / "fixtures" / "schema1" / "ablate.sqlite"
# per variant, per layer (the fixture's γ labels): the median r of each seed's run; se@backbone gets none (unknown)
HAND_MADE = {
    "se@neck": {"16": (0.0010, 0.0012), "19": (0.0020, 0.0018), "22": (0.0024, 0.0020)},  # today's demo: r ≤ 0.0024
    "cbam@neck": {"16": (0.01, 0.03), "19": (0.08, 0.08), "22": (1.00, 1.20)},  # the engaging recipe's range
}


def _add_engagement(folder: Path) -> None:
    """Migrate the fixture's database as a resume would, then write the hand-made rows into it."""
    ResultsStore(folder, writable=True).close()
    with sqlite3.connect(folder / "ablate.sqlite") as conn:
        for variant, layers in HAND_MADE.items():
            for seed in (0, 1):
                for pos, (label, medians) in enumerate(layers.items()):
                    r = medians[seed]
                    conn.execute(
                        "INSERT INTO engagement VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (f"{variant}-s{seed}", label, pos, variant.split("@")[0], r, 2 * r, json.dumps([r, r, 2 * r])),
                    )
            conn.execute("UPDATE runs SET engagement_seconds = 0.5 WHERE variant = ?", (variant,))


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    folder = tmp_path / "grid"
    shutil.copytree(FIXTURE, folder)
    shutil.copy(SCHEMA1, folder / "ablate.sqlite")  # the database as schema 1 wrote it
    return folder


def test_tau_separates_the_measured_unengaged_from_the_engaged():
    # the measurements τ was chosen from (issue 21): r ≤ 0.0024 unengaged, 0.08..1.10 engaged
    assert 0.0024 < stats.ENGAGEMENT_TAU <= 0.08
    no = stats.NO_DIFFERENCE
    assert stats.engagement_verdict(no, 0.0024) == "attention not engaged at this budget (r < 0.05)"
    assert stats.engagement_verdict(no, 0.08) == "engaged; no measurable difference"
    assert stats.engagement_verdict(no, None) == no  # unknown engagement: the statistics' words alone
    for word in ("better", "worse"):  # a measured difference stays what the statistics say
        assert stats.engagement_verdict(word, 0.0) == word


def test_verdicts_say_whether_the_attention_engaged(grid: Path):
    _add_engagement(grid)
    rows = {r.variant: r for r in analyse(grid, resamples=500).rows}
    se, cbam, backbone = rows["se@neck"], rows["cbam@neck"], rows["se@backbone"]
    assert se.low < 0 < se.high and cbam.low < 0 < cbam.high  # both intervals contain 0
    assert cbam.high - cbam.low > 0.1  # a wide interval
    assert se.verdict == "attention not engaged at this budget (r < 0.05)"
    assert cbam.verdict == "engaged; no measurable difference"
    assert backbone.verdict == stats.NO_DIFFERENCE and backbone.engagement is None
    # per layer: mean over the two seeds of the median r, max over seeds of the max; model order
    assert [layer.label for layer in cbam.engagement] == ["16", "19", "22"]
    assert [layer.r_median for layer in cbam.engagement] == pytest.approx([0.02, 0.08, 1.10])
    assert [layer.r_max for layer in cbam.engagement] == pytest.approx([0.06, 0.16, 2.40])
    assert cbam.r_median == pytest.approx(0.08) and cbam.r_max == pytest.approx(1.10)
    assert se.r_max == pytest.approx(0.0022)


def test_table_report_md_and_html_show_engagement(grid: Path):
    _add_engagement(grid)
    a, md_path, html_path = write_report(grid, resamples=500, gallery=0, progress=None)
    column = HEADERS.index("engagement r")
    cells = {row[0]: row[column] for row in table_rows(a)}
    assert cells == {
        "cbam@neck": "0.0800 (max 1.1000)",
        "se@neck": "0.0019 (max 0.0022)",  # layer means 0.0011, 0.0019, 0.0022
        "baseline": "-",
        "se@backbone": "unknown",
    }
    md = md_path.read_text()
    assert "| engagement r |" in md and "0.0800 (max 1.1000)" in md
    assert re.search(r"\| attention not engaged at this budget \(r < 0\.05; interval width 0\.\d{4}\) \|", md)
    assert re.search(r"\| engaged; no measurable difference \(interval width 0\.\d{4}\) \|", md)
    page = html.unescape(html_path.read_text())
    assert "Engagement per layer" in page
    gammas = {layer.label: layer.gamma for layer in next(r for r in a.rows if r.variant == "cbam@neck").engagement}
    assert all(g is not None for g in gammas.values())
    # cbam@neck's table: layer, attention, r median, r max, γ (the fixture's last-epoch γ, mean over seeds)
    want = f"<tr><td>22</td><td>cbam</td><td>1.1000</td><td>2.4000</td><td>{gammas['22']:+.4f}</td></tr>"
    assert want in page


def test_an_old_database_reports_unknown_engagement_without_writing(grid: Path):
    before = (grid / "ablate.sqlite").read_bytes()
    a, _, _ = write_report(grid, resamples=200, gallery=0, progress=None)
    assert all(r.engagement is None for r in a.rows)
    assert {r.verdict for r in a.rows} <= {"reference", stats.NO_DIFFERENCE, "better", "worse"}
    column = HEADERS.index("engagement r")
    assert {row[0]: row[column] for row in table_rows(a)}["cbam@neck"] == "unknown"
    assert (grid / "ablate.sqlite").read_bytes() == before
    with sqlite3.connect(f"{(grid / 'ablate.sqlite').resolve().as_uri()}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
