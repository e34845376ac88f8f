"""The record of a search: ``SEARCH_DIR/search.sqlite``, one row per candidate and one per rung each reached.

``search`` holds the search's config (what a resume compares), ``candidates`` each candidate's costs and whether the
cost limits pruned it, ``rungs`` every rung of every candidate: its epoch and the mAP50-95 Ultralytics' per-epoch
validation gave there (one short, unseeded-across-candidates run: a screening score, not a verdict). Each write is one
transaction (a kill leaves the previous state), rows are never rewritten (``INSERT OR IGNORE``), and only the driver
writes, from the Ray Tune callback that sees every report.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from attnyolo.search.candidates import SearchError

DB_NAME = "search.sqlite"
RUNS = "runs"
"""``SEARCH_DIR/runs/<candidate>``: each candidate's Ultralytics run (on the driver's machine)."""
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE search (id INTEGER PRIMARY KEY CHECK (id = 1), config TEXT NOT NULL, created TEXT NOT NULL,
                     finished TEXT);
CREATE TABLE candidates (
    label TEXT PRIMARY KEY, position INTEGER NOT NULL, attention TEXT NOT NULL, place TEXT NOT NULL,
    params INTEGER NOT NULL, added_params INTEGER NOT NULL, gflops REAL NOT NULL, gflops_ratio REAL NOT NULL,
    latency_ratio REAL, pruned TEXT
);
CREATE TABLE rungs (
    label TEXT NOT NULL REFERENCES candidates (label), rung INTEGER NOT NULL, epoch INTEGER NOT NULL,
    map50_95 REAL NOT NULL, map50 REAL, recorded TEXT NOT NULL, PRIMARY KEY (label, rung)
);
"""
CANDIDATE_COLUMNS = (
    "label", "position", "attention", "place", "params", "added_params", "gflops", "gflops_ratio", "latency_ratio",
    "pruned",
)  # fmt: skip


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class SearchStore:
    """``search.sqlite`` of a search folder (created by :meth:`create`, reopened by the constructor)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / DB_NAME
        if not self.path.is_file():
            raise SearchError(f"{self.folder} holds no {DB_NAME}: not a search folder")
        self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            self.conn.close()
            raise SearchError(f"{self.path} has schema {version}, this attnyolo reads {SCHEMA_VERSION}")

    @classmethod
    def create(cls, folder: str | Path, config: Mapping[str, Any]) -> SearchStore:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(folder / DB_NAME, isolation_level=None)
        try:
            conn.executescript(
                f"BEGIN; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; "
                f"INSERT INTO search (id, config, created) VALUES (1, {_quote(json.dumps(dict(config)))}, "
                f"{_quote(_now())}); COMMIT;"
            )
        finally:
            conn.close()
        return cls(folder)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> SearchStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def config(self) -> dict:
        return json.loads(self.conn.execute("SELECT config FROM search").fetchone()[0])

    def add_candidates(self, rows: list[Mapping[str, Any]]) -> None:
        """Each candidate's costs and pruning reason (``None``: it trains), once; a resume keeps the first."""
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany(
                f"INSERT OR IGNORE INTO candidates ({', '.join(CANDIDATE_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(CANDIDATE_COLUMNS))})",
                [tuple(r.get(c) for c in CANDIDATE_COLUMNS) for r in rows],
            )

    def add_rung(self, label: str, rung: int, epoch: int, map50_95: float, map50: float | None = None) -> bool:
        """Record a candidate's score at a rung; ``False`` when that rung was recorded already (a replay)."""
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO rungs (label, rung, epoch, map50_95, map50, recorded) VALUES (?, ?, ?, ?, ?, ?)",
            (label, rung, epoch, float(map50_95), None if map50 is None else float(map50), _now()),
        )
        return cur.rowcount == 1

    def mark_finished(self) -> None:
        self.conn.execute("UPDATE search SET finished = ? WHERE id = 1", (_now(),))

    def candidates(self) -> list[dict]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM candidates ORDER BY position")]

    def rungs(self) -> list[dict]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM rungs ORDER BY rung, label")]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
