"""Engagement in the results database (schema 2): per-layer round trip, migration of a schema-1 database written by
the attnyolo before it, read-only opens of an old database, and the one-line refusal of a newer one.

``fixtures/schema1/ablate.sqlite`` is the report fixture's database as ``make_fixture.py`` wrote it with schema 1
(8 finished runs), at rest in the rollback-journal mode the store leaves a closed database in."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from attnyolo.experiments.store import SCHEMA_VERSION, ResultsStore, SchemaError

SCHEMA1 = Path(__file__).parent / "fixtures" / "schema1" / "ablate.sqlite"
RUN = {"run_id": "cbam@neck-s0", "variant": "cbam@neck", "attention": "cbam", "placement": "neck", "hparams": {},
       "seed": 0, "is_baseline": False}  # fmt: skip
LAYERS = [
    {"label": "16", "attention": "cbam", "r_median": 0.08, "r_max": 0.11, "r_values": [0.05, 0.08, 0.11]},
    {"label": "4.m.0.attn", "attention": "cbam", "r_median": 0.98, "r_max": 1.2, "r_values": [0.9, 0.98, 1.2]},
]


def _raw(path: Path) -> tuple[int, list[tuple], list[tuple]]:
    """(user_version, every grid row, every runs row) read with plain sqlite3, columns of schema 1 only."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        grid = conn.execute("SELECT * FROM grid").fetchall()
        cols = [r[1] for r in conn.execute("PRAGMA table_info(runs)") if r[1] != "engagement_seconds"]
        runs = conn.execute(f"SELECT {', '.join(cols)} FROM runs ORDER BY run_id").fetchall()
    finally:
        conn.close()
    return version, grid, runs


@pytest.fixture
def old_db(tmp_path) -> Path:
    folder = tmp_path / "grid"
    folder.mkdir()
    shutil.copy(SCHEMA1, folder / "ablate.sqlite")
    return folder / "ablate.sqlite"


def test_the_fixture_is_a_schema_1_database_with_finished_runs(old_db):
    version, grid, runs = _raw(old_db)
    assert version == 1 and len(grid) == 1 and len(runs) == 8


def test_engagement_round_trips_per_layer(tmp_path):
    store = ResultsStore.create(tmp_path / "g", {"data": "d.yaml"}, {"cpu": "x"}, {"attnyolo": "0"}, None)
    base = {**RUN, "run_id": "baseline-s0", "variant": "baseline", "attention": None, "is_baseline": True}
    store.add_runs([base, RUN])
    for rid in ("baseline-s0", "cbam@neck-s0"):
        store.mark_running(rid)
    store.mark_done("baseline-s0", {"map50": 0.5, "engagement": None, "engagement_seconds": None})
    store.mark_done("cbam@neck-s0", {"map50": 0.6, "engagement": LAYERS, "engagement_seconds": 1.5})
    store.mark_done("cbam@neck-s0", {"map50": 0.1, "engagement": LAYERS[:1]})  # a done row is never rewritten
    store.close()
    with ResultsStore(tmp_path / "g") as reader:
        base_row, row = reader.runs()
    assert base_row["engagement"] is None and base_row["engagement_seconds"] is None
    assert row["engagement_seconds"] == 1.5 and row["map50"] == 0.6
    assert row["engagement"] == LAYERS  # model order, every per-image value


def test_read_only_open_of_a_schema_1_database_reads_it_unchanged_with_unknown_engagement(old_db):
    before = old_db.read_bytes()
    with ResultsStore(old_db.parent) as store:
        assert store.version == 1
        rows = store.runs()
    assert len(rows) == 8 and all(r["engagement"] is None and r["engagement_seconds"] is None for r in rows)
    assert old_db.read_bytes() == before
    assert sorted(p.name for p in old_db.parent.iterdir()) == ["ablate.sqlite"]


def test_writable_open_migrates_schema_1_and_loses_nothing(old_db):
    version, grid, runs = _raw(old_db)
    with ResultsStore(old_db.parent) as reader:
        rows_before = reader.runs(None)
    with ResultsStore(old_db.parent, writable=True) as store:  # what `attnyolo ablate --resume` opens
        assert store.version == SCHEMA_VERSION == 2
        assert store.integrity() == "ok"
    new_version, new_grid, new_runs = _raw(old_db)
    assert (new_version, new_grid, new_runs) == (2, grid, runs)
    with ResultsStore(old_db.parent) as reader:
        rows_after = reader.runs(None)
    assert rows_after == rows_before  # engagement None (unknown) before and after
    # the migrated database takes new runs with their engagement
    with ResultsStore(old_db.parent, writable=True) as store:
        store.add_runs([RUN | {"run_id": "extra-s0", "variant": "extra"}])
        store.mark_running("extra-s0")
        store.mark_done("extra-s0", {"map50": 0.3, "engagement": LAYERS, "engagement_seconds": 2.0})
        (extra,) = [r for r in store.runs() if r["run_id"] == "extra-s0"]
    assert extra["engagement"] == LAYERS and extra["engagement_seconds"] == 2.0


def test_a_newer_schema_is_still_refused_in_one_line(old_db):
    conn = sqlite3.connect(old_db)
    conn.execute("PRAGMA user_version=3")
    conn.close()
    for writable in (False, True):
        with pytest.raises(SchemaError, match=r"schema version 3, this attnyolo reads version 2: .*newer") as e:
            ResultsStore(old_db.parent, writable=writable)
        assert "\n" not in str(e.value)
    assert _raw(old_db)[0] == 3
