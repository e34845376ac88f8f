"""The results database of a grid folder: ``GRID_DIR/ablate.sqlite`` (SQLite, schema version in ``user_version``).

One row per run (``runs``), one row for the grid (``grid``), and one row per attention layer of each finished
run (``engagement``: ``r = ‖out − in‖ / ‖in‖`` of best.pt's layer over the validation images, schema 2). Every
write is one transaction, so a process killed during a write (``kill -9``, power loss) leaves the previous state;
only the driver process writes.
A run is ``pending``, ``running`` (with its driver's ``owner``, ``host:pid``), ``done`` or ``failed``. A row
``running`` whose owner is no longer alive is a killed run: :meth:`ResultsStore.recover` puts it back to
``pending`` so the next driver redoes (or continues) it; ``done`` rows are never rewritten.

The driver opens it for writing (WAL while it runs, so that readers never wait); everything else opens it read-only
(``mode=ro``), which can neither create nor change the file, after checking that it is a results database of
this schema (an empty, damaged or newer file is one line naming it and what to do). A database of schema 1 (before
engagement) is read as it is, engagement unknown; a writable open migrates it in place, keeping every row.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from attnyolo.errors import AttnYoloError

SCHEMA_VERSION = 2
"""2: the ``engagement`` table and ``runs.engagement_seconds`` (issue 21); 1: ``grid`` and ``runs``."""
MIGRATES_FROM = (1,)
"""Older versions a writable open migrates in place (a read-only open reads them as they are)."""
DB_NAME = "ablate.sqlite"
GRID_YAML = "grid.yaml"
STATES = ("pending", "running", "done", "failed")

_JSON = {"hparams", "placement", "per_class_ap", "epochs", "gamma", "versions", "config"}
RESULT_COLUMNS = (
    "params",
    "gflops",
    "latency_ms",
    "latency_ratio",
    "map50",
    "map50_95",
    "precision",
    "recall",
    "per_class_ap",
    "epochs",
    "train_seconds",
    "run_dir",
    "val_stats",
    "gamma",
    "versions",
    "git_rev",
    "config",
    "engagement_seconds",
)
ENGAGEMENT_COLUMNS = ("label", "attention", "r_median", "r_max", "r_values")
_ENGAGEMENT_TABLE = """
CREATE TABLE engagement (
    run_id TEXT NOT NULL REFERENCES runs (run_id), label TEXT NOT NULL, position INTEGER NOT NULL,
    attention TEXT NOT NULL, r_median REAL NOT NULL, r_max REAL NOT NULL, r_values TEXT NOT NULL,
    PRIMARY KEY (run_id, label)
);
"""
# from schema 1 to 2: one column and one table added, nothing rewritten (a run measured before stays unknown)
_MIGRATE_1_TO_2 = "ALTER TABLE runs ADD COLUMN engagement_seconds REAL;" + _ENGAGEMENT_TABLE
_TABLES = f"""
CREATE TABLE grid (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    config TEXT NOT NULL, created TEXT NOT NULL, finished TEXT, wall_seconds REAL NOT NULL DEFAULT 0,
    machine TEXT NOT NULL, versions TEXT NOT NULL, git_rev TEXT
);
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, position INTEGER NOT NULL, variant TEXT NOT NULL, attention TEXT, placement TEXT,
    hparams TEXT NOT NULL, seed INTEGER NOT NULL, is_baseline INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN {STATES!r}), error TEXT, owner TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    started TEXT, finished TEXT,
    params INTEGER, gflops REAL, latency_ms REAL, latency_ratio REAL, map50 REAL, map50_95 REAL, precision REAL,
    recall REAL, per_class_ap TEXT, epochs TEXT, train_seconds REAL, run_dir TEXT, val_stats TEXT, gamma TEXT,
    versions TEXT, git_rev TEXT, config TEXT, engagement_seconds REAL
);
"""
_SCHEMA = _TABLES + _ENGAGEMENT_TABLE


class StoreError(AttnYoloError):
    """A results database that cannot be used as asked."""


class SchemaError(StoreError):
    """A results database written with another schema version."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """A folder (or path) without ``ablate.sqlite``."""


class CorruptStoreError(StoreError):
    """A file named ``ablate.sqlite`` that is not a readable results database (empty, damaged, foreign)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def owner_id() -> str:
    """``host:pid`` of this process: who holds a ``running`` row."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str | None) -> bool:
    """Whether the process named by ``owner`` still runs (a process on another host is assumed alive)."""
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def db_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p if p.suffix == ".sqlite" else p / DB_NAME


def _start_over(path: Path) -> str:
    return f"move it away and run `attnyolo ablate -o {path.parent}` to run the grid again into a new one"


def check_database(path: Path, conn: sqlite3.Connection) -> int:
    """Refuse, with one line naming ``path`` and what to do, a file that is not a results database of this schema
    or of an older one this attnyolo migrates (:data:`MIGRATES_FROM`); return its schema version.

    ``conn`` is a read-only connection: nothing here can change the file.
    """
    if path.stat().st_size == 0:  # SQLite would take it for a new, empty database
        raise CorruptStoreError(f"{path} is empty (0 bytes), not a results database: {_start_over(path)}")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as e:  # "file is not a database", "database disk image is malformed"
        raise CorruptStoreError(
            f"{path} is not a readable results database ({e}): restore it from a backup, or {_start_over(path)}"
        ) from None
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"{path}: results database schema version {version}, this attnyolo reads version {SCHEMA_VERSION}: "
            "it was written by a newer attnyolo; upgrade attnyolo (pip install -U attnyolo) to read it"
        )
    if (version != SCHEMA_VERSION and version not in MIGRATES_FROM) or not {"grid", "runs"} <= tables:
        raise SchemaError(
            f"{path}: results database schema version {version}, this attnyolo reads version {SCHEMA_VERSION}: "
            f"not a database written by attnyolo ablate; {_start_over(path)}"
        )
    return version


class ResultsStore:
    """The results database of one grid folder (or the ``.sqlite`` file itself).

    Opened read-only unless ``writable=True`` (only the grid driver writes): a read never changes the file, and a
    file that is not a results database is refused before anything could write it.

    Raises:
        StoreNotFoundError: no ``ablate.sqlite`` there (use :meth:`create` to start one).
        CorruptStoreError: the file is empty, damaged or not a SQLite database.
        SchemaError: the file was written with another schema version (or by something other than attnyolo).
    """

    def __init__(self, path: str | os.PathLike, *, writable: bool = False) -> None:
        self.path = db_path(path)
        if not self.path.is_file():
            raise StoreNotFoundError(f"{self.path.parent} holds no results database ({DB_NAME}): run attnyolo ablate")
        self.folder = self.path.parent
        self.writable = writable
        # Checked on a read-only connection first, so that a file which is not a results database (empty,
        # corrupted, another schema) is reported and left exactly as it was, whoever opens it.
        reader = self._connect_readonly(self.path)
        try:
            self.version = check_database(self.path, reader)
        except BaseException:
            reader.close()
            raise
        if writable:
            reader.close()
            self._conn = self._connect(self.path)
            if self.version != SCHEMA_VERSION:
                self._migrate()
        else:
            self._conn = reader

    def _migrate(self) -> None:
        """Bring an older database to this schema in one transaction (a kill leaves the old version whole)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            # read again under the write lock: another driver may have migrated it since the check
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 1:
                for statement in _MIGRATE_1_TO_2.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.version = SCHEMA_VERSION

    @staticmethod
    def _connect_readonly(path: Path) -> sqlite3.Connection:
        # mode=ro: SQLite neither creates the file nor writes it (not even the WAL switch a writer makes).
        uri = f"{path.resolve().as_uri()}?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError(f"{path}: cannot open the results database ({e}); check its permissions") from None
        conn.row_factory = sqlite3.Row
        return conn

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)  # explicit BEGIN ... COMMIT below
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # a committed run survives power loss
        return conn

    @classmethod
    def create(
        cls, folder: str | os.PathLike, config: Mapping, machine: Mapping, versions: Mapping, git_rev: str | None
    ) -> ResultsStore:
        """Create ``folder/ablate.sqlite`` for a new grid (the folder must not hold one)."""
        path = db_path(folder)
        if path.exists():
            raise StoreError(f"{path} exists already: open it with ResultsStore({str(path.parent)!r})")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        conn = cls._connect(tmp)
        try:
            conn.executescript(_SCHEMA + f"PRAGMA user_version={SCHEMA_VERSION};")
            conn.execute("BEGIN")
            conn.execute(
                "INSERT INTO grid (id, config, created, machine, versions, git_rev) VALUES (1, ?, ?, ?, ?, ?)",
                (json.dumps(dict(config)), _now(), json.dumps(dict(machine)), json.dumps(dict(versions)), git_rev),
            )
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode=DELETE")  # one self-contained file before the rename
        finally:
            conn.close()
        os.replace(tmp, path)  # a half-created database is never seen under the real name
        return cls(path, writable=True)

    def close(self) -> None:
        if self.writable:
            # At rest the database is one self-contained file (no -wal/-shm beside it): a copy of ablate.sqlite
            # alone holds every result, and a read-only reader creates no files. Skipped while another process
            # has it open (it then stays WAL until the last writer closes).
            try:
                self._conn.execute("PRAGMA busy_timeout=0")
                self._conn.execute("PRAGMA journal_mode=DELETE")
            except sqlite3.OperationalError:
                pass
        self._conn.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------ writes

    def _writer(self) -> sqlite3.Connection:
        if not self.writable:
            raise StoreError(f"{self.path} is open read-only: open it with ResultsStore(..., writable=True) to write")
        return self._conn

    def _write(self, sql: str, params: tuple | list = ()) -> None:
        conn = self._writer()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def add_runs(self, runs: list[Mapping[str, Any]]) -> None:
        """Insert the grid's runs as ``pending`` (runs already stored are left as they are)."""
        conn = self._writer()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for pos, r in enumerate(runs):
                conn.execute(
                    "INSERT OR IGNORE INTO runs (run_id, position, variant, attention, placement, hparams, seed,"
                    " is_baseline, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
                    (
                        r["run_id"],
                        pos,
                        r["variant"],
                        r["attention"],
                        json.dumps(r["placement"]),
                        json.dumps(r["hparams"]),
                        int(r["seed"]),
                        int(bool(r["is_baseline"])),
                    ),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def recover(self) -> list[str]:
        """Put ``running`` rows whose owner died back to ``pending``; return their run ids."""
        dead = [
            r["run_id"]
            for r in self._read("SELECT run_id, owner FROM runs WHERE state='running'")
            if not owner_alive(r["owner"])
        ]
        for rid in dead:
            self._write("UPDATE runs SET state='pending', owner=NULL WHERE run_id=? AND state='running'", (rid,))
        return dead

    def live_owners(self) -> list[str]:
        """Owners of ``running`` rows that are still alive (another driver working on this folder)."""
        rows = self._read("SELECT DISTINCT owner FROM runs WHERE state='running'")
        return [r["owner"] for r in rows if owner_alive(r["owner"]) and r["owner"] != owner_id()]

    def mark_running(self, run_id: str, owner: str | None = None) -> None:
        self._write(
            "UPDATE runs SET state='running', owner=?, started=?, error=NULL, attempts=attempts+1 "
            "WHERE run_id=? AND state IN ('pending', 'failed')",
            (owner or owner_id(), _now(), run_id),
        )

    def mark_done(self, run_id: str, result: Mapping[str, Any]) -> None:
        """Store a finished run's results (one transaction); a ``done`` row is never overwritten.

        ``result["engagement"]`` (optional): one dict per attention layer, in model order, with the keys of
        :data:`ENGAGEMENT_COLUMNS` (``r_values`` the per-image list); ``None`` or absent for a run without attention.
        """
        cols = [c for c in RESULT_COLUMNS if c in result]
        values = [json.dumps(result[c]) if c in _JSON else result[c] for c in cols]
        sets = ", ".join(f"{c}=?" for c in cols)
        conn = self._writer()
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(
                f"UPDATE runs SET {sets}, state='done', owner=NULL, error=NULL, finished=? "
                "WHERE run_id=? AND state != 'done'",
                (*values, _now(), run_id),
            )
            if cur.rowcount:  # a done row is never rewritten, nor are its engagement rows
                conn.execute("DELETE FROM engagement WHERE run_id=?", (run_id,))
                for pos, layer in enumerate(result.get("engagement") or []):
                    conn.execute(
                        "INSERT INTO engagement (run_id, label, position, attention, r_median, r_max, r_values)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            run_id,
                            str(layer["label"]),
                            pos,
                            str(layer["attention"]),
                            float(layer["r_median"]),
                            float(layer["r_max"]),
                            json.dumps([float(v) for v in layer["r_values"]]),
                        ),
                    )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def mark_failed(self, run_id: str, error: str) -> None:
        self._write(
            "UPDATE runs SET state='failed', owner=NULL, error=?, finished=? WHERE run_id=? AND state != 'done'",
            (error, _now(), run_id),
        )

    def add_wall_seconds(self, seconds: float, finished: bool) -> None:
        self._write(
            "UPDATE grid SET wall_seconds = wall_seconds + ?, finished = ? WHERE id = 1",
            (float(seconds), _now() if finished else None),
        )

    # ------------------------------------------------------------------------------------------------- reads

    def _read(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as e:  # damaged past its header: a line, not a traceback
            raise CorruptStoreError(
                f"{self.path} cannot be read ({e}): restore it from a backup, or {_start_over(self.path)}"
            ) from None

    def grid(self) -> dict:
        """The grid row: ``config, created, finished, wall_seconds, machine, versions, git_rev``."""
        rows = self._read("SELECT * FROM grid WHERE id = 1")
        row = rows[0] if rows else None
        if row is None:
            raise StoreError(f"{self.path}: no grid row")
        d = dict(row)
        d.pop("id")
        for key in ("config", "machine", "versions"):
            d[key] = json.loads(d[key])
        return d

    def engagement(self) -> dict[str, list[dict]]:
        """``{run_id: [{label, attention, r_median, r_max, r_values}, ...]}`` in model order, for the runs that have
        engagement rows (none in a database of schema 1, read as it is: unknown)."""
        if self.version < 2:
            return {}
        out: dict[str, list[dict]] = {}
        rows = self._read(f"SELECT run_id, {', '.join(ENGAGEMENT_COLUMNS)} FROM engagement ORDER BY run_id, position")
        for row in rows:
            d = dict(row)
            d["r_values"] = json.loads(d["r_values"])
            out.setdefault(d.pop("run_id"), []).append(d)
        return out

    def runs(self, state: str | None = "done") -> list[dict]:
        """Rows in grid order, as dicts (JSON columns decoded); ``state=None`` gives every row.

        ``engagement`` holds the run's engagement rows (:meth:`engagement`), ``None`` where none are stored: a run
        without attention, or one whose engagement is unknown (measured before schema 2, or not done);
        ``engagement_seconds`` is ``None`` then too."""
        if state is not None and state not in STATES:
            raise StoreError(f"state must be one of {', '.join(STATES)} or None, got {state!r}")
        sql = "SELECT * FROM runs" + (" WHERE state = ?" if state else "") + " ORDER BY position"
        out = []
        engagement = self.engagement()
        for row in self._read(sql, (state,) if state else ()):
            d = dict(row)
            d.setdefault("engagement_seconds", None)  # schema 1 has no such column
            d["engagement"] = engagement.get(d["run_id"])
            for key in _JSON:
                if d.get(key) is not None:
                    d[key] = json.loads(d[key])
            d["is_baseline"] = bool(d["is_baseline"])
            d["gamma"] = d.get("gamma") or ([] if d["state"] == "done" else None)
            out.append(d)
        return out

    def integrity(self) -> str:
        """``PRAGMA integrity_check``'s answer (``"ok"`` for a sound file)."""
        return self._read("PRAGMA integrity_check")[0][0]
