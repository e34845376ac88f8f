"""The results store: schema version, missing database, transactions, killed-owner detection."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from attnyolo.experiments.store import ResultsStore, SchemaError, StoreNotFoundError, owner_id

RUN = {"run_id": "se@neck-s0", "variant": "se@neck", "attention": "se", "placement": "neck", "hparams": {},
       "seed": 0, "is_baseline": False}  # fmt: skip


def _store(tmp_path):
    return ResultsStore.create(tmp_path / "g", {"data": "d.yaml"}, {"cpu": "x"}, {"attnyolo": "0"}, None)


def test_folder_without_database_raises_store_not_found(tmp_path):
    with pytest.raises(StoreNotFoundError, match="holds no results database"):
        ResultsStore(tmp_path)


def test_other_schema_version_is_refused_naming_both(tmp_path):
    _store(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "g" / "ablate.sqlite")
    conn.execute("PRAGMA user_version=7")
    conn.close()
    with pytest.raises(SchemaError, match="schema version 7, this attnyolo reads version 2"):
        ResultsStore(tmp_path / "g")


def test_database_is_wal_and_done_rows_are_never_overwritten(tmp_path):
    store = _store(tmp_path)
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.add_runs([RUN])
    store.mark_running("se@neck-s0")
    store.mark_done("se@neck-s0", {"map50": 0.5, "per_class_ap": {"a": 0.1}})
    store.mark_failed("se@neck-s0", "late error")
    store.mark_done("se@neck-s0", {"map50": 0.9})
    store.add_runs([RUN])  # adding the grid again keeps the stored row
    (row,) = store.runs(None)
    assert row["state"] == "done" and row["map50"] == 0.5 and row["per_class_ap"] == {"a": 0.1} and row["error"] is None
    assert store.integrity() == "ok"


def test_running_row_of_a_dead_owner_goes_back_to_pending(tmp_path):
    store = _store(tmp_path)
    store.add_runs([RUN, {**RUN, "run_id": "se@neck-s1", "seed": 1}])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_owner = f"{owner_id().rpartition(':')[0]}:{int(dead.stdout)}"  # a process that has exited
    store.mark_running("se@neck-s0", dead_owner)
    store.mark_running("se@neck-s1")  # this process: alive
    assert store.recover() == ["se@neck-s0"]
    assert [r["state"] for r in store.runs(None)] == ["pending", "running"]
