"""A results database that is missing, empty, corrupted or of a newer schema: `attnyolo report`, `ablate`,
`ablate --resume` and `demo` each say so in one line naming the file, and leave the folder byte for byte as it was.
A read of a sound database does not write it either."""

from __future__ import annotations

import hashlib
import random
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml
from grid_helpers import tiny_grid

from attnyolo.cli import main
from attnyolo.experiments.grid import resolve
from attnyolo.experiments.runner import git_rev, machine, versions
from attnyolo.experiments.store import SCHEMA_VERSION, ResultsStore, StoreError

REPORT_FIXTURE = Path(__file__).parents[1] / "report" / "fixtures" / "grid"


def _digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and its SHA-256 (a new -wal/-shm file counts as a change too)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def _empty(db: Path) -> None:
    db.write_bytes(b"")


def _random_bytes(db: Path) -> None:
    db.write_bytes(random.Random(20).randbytes(8192))  # what `head -c 8192 /dev/urandom` leaves


def _newer_schema(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()


DAMAGES = {
    "empty": (_empty, "is empty (0 bytes)"),
    "random bytes": (_random_bytes, "is not a readable results database"),
    "newer schema": (_newer_schema, "written by a newer attnyolo"),
}


@pytest.fixture
def damaged(request, tmp_path, default_data) -> tuple[Path, str]:
    """A grid folder (grid.yaml and the tiny grid's database) whose ablate.sqlite was damaged as named."""
    damage, expected = DAMAGES[request.param]
    folder = tmp_path / "grid"
    config = resolve(tiny_grid(default_data)).config()
    ResultsStore.create(folder, config, machine(), versions(), git_rev()).close()
    (folder / "grid.yaml").write_text(yaml.safe_dump(config))
    damage(folder / "ablate.sqlite")
    return folder, expected


def _commands(folder: Path, data: Path) -> dict[str, list[str]]:
    return {
        "report": ["report", str(folder)],
        "ablate": ["ablate", str(folder / "grid.yaml"), "-o", str(folder)],
        "ablate --resume": ["ablate", "-o", str(folder), "--resume"],
        "ablate flags": ["ablate", "--data", str(data), "-m", "yolov8n.yaml", "-a", "se", "-o", str(folder),
                         "epochs=1", "imgsz=64"],
        "demo": ["demo", "--quick", "--out", str(folder)],
    }  # fmt: skip


def _one_line_error(capsys, argv: list[str]) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("attnyolo: error: ") and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("damaged", list(DAMAGES), indirect=True)
@pytest.mark.parametrize("command", ["report", "ablate", "ablate --resume", "ablate flags", "demo"])
def test_damaged_database_is_one_line_naming_it_and_the_folder_is_unchanged(damaged, command, capsys, default_data):
    folder, expected = damaged
    before = _digest(folder)
    err = _one_line_error(capsys, _commands(folder, default_data)[command])
    print(f"{command}: {err}")
    assert str(folder / "ablate.sqlite") in err and expected in err
    assert "attnyolo ablate -o" in err or "upgrade attnyolo" in err  # what to do
    assert _digest(folder) == before


@pytest.mark.parametrize("command", ["report", "ablate --resume"])
def test_missing_database_is_one_line_and_creates_nothing(command, tmp_path, capsys, default_data):
    folder = tmp_path / "grid"
    folder.mkdir()
    (folder / "grid.yaml").write_text(yaml.safe_dump(resolve(tiny_grid(default_data)).config()))
    before = _digest(folder)
    err = _one_line_error(capsys, _commands(folder, default_data)[command])
    assert "ablate.sqlite" in err and str(folder) in err
    assert _digest(folder) == before  # no database was created by a read


def test_report_on_a_sound_database_leaves_it_byte_for_byte(tmp_path, capsys):
    folder = tmp_path / "grid"
    shutil.copytree(REPORT_FIXTURE, folder)
    db = folder / "ablate.sqlite"
    with sqlite3.connect(db) as conn:  # at rest, as the driver now leaves it: one file, no WAL beside it
        conn.execute("PRAGMA journal_mode=DELETE")
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    assert main(["report", str(folder), "--resamples", "200", "--gallery", "0"]) == 0
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in folder.glob("ablate.sqlite*")) == ["ablate.sqlite"]  # no -wal, no -shm


def test_a_read_only_store_refuses_writes_and_the_driver_leaves_one_file(tmp_path):
    folder = tmp_path / "g"
    ResultsStore.create(folder, {"data": "d.yaml"}, {"cpu": "x"}, {"attnyolo": "0"}, None).close()
    assert sorted(p.name for p in folder.iterdir()) == ["ablate.sqlite"]  # closed writer: no -wal/-shm left
    with ResultsStore(folder) as store:
        with pytest.raises(StoreError, match="open read-only"):
            store.mark_failed("x", "y")
        with pytest.raises(sqlite3.OperationalError, match="readonly"):  # SQLite itself refuses too
            store._conn.execute("UPDATE grid SET wall_seconds = 1")
