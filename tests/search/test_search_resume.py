"""Kill a search during a rung (SIGKILL to its whole process group: driver, Ray and the trial), run it again: nothing
that had finished is trained again, nothing recorded is lost, and the rung record equals an uninterrupted search's.

The trainable is the stand-in (tests/search/fake_trainable.py), which keeps attnyolo's trainable's contract: an epoch
is saved before it is reported, and a restart replays what was saved to ASHA before training on."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts Ray three times (trains nothing)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def start(folder: Path, sleep: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)]), "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen(
        [sys.executable, str(HERE / "stand_in_search.py"), str(folder), str(sleep)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def rung_rows(folder: Path) -> list[tuple]:
    conn = sqlite3.connect(f"file:{folder / 'search.sqlite'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT label, rung, epoch, map50_95 FROM rungs ORDER BY rung, label").fetchall()
    finally:
        conn.close()


def trained(folder: Path) -> list[str]:
    path = folder / "trained.log"
    return path.read_text().splitlines() if path.is_file() else []


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    return out


def test_a_killed_search_resumes_without_training_twice_or_losing_rungs(tmp_path):
    clean = tmp_path / "clean"
    finish(start(clean, 0.0))
    expected = rung_rows(clean)
    # ASHA on 9 candidates in order, rungs 1, 3, 9 (eta 3): all are scored at rung 1; a, b, d, f go on to rung 3
    assert len([r for r in expected if r[1] == 0]) == 9
    assert sorted(r[0] for r in expected if r[1] == 1) == ["a", "b", "d", "f"]

    killed = tmp_path / "killed"
    proc = start(killed, 0.4)
    deadline = time.monotonic() + 240
    # kill once candidate d (the 4th) trained its 2nd epoch: a and b finished, d is between rung 1 and rung 3
    while "d 2" not in trained(killed):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = trained(killed)
    rows_before = rung_rows(killed)
    assert ("d", 0, 1, 0.9) in rows_before and not any(r[0] == "e" for r in rows_before)

    finish(start(killed, 0.0))
    after = trained(killed)
    # nothing trained twice: every (candidate, epoch) line once, those of the killed session included
    assert len(after) == len(set(after)), [t for t in after if after.count(t) > 1]
    assert after[: len(before)] == before
    # nothing lost: every row of the killed session is still there, and the record is the uninterrupted one
    assert set(rows_before) <= set(rung_rows(killed))
    assert rung_rows(killed) == expected
    assert sorted(after) == sorted(trained(clean))
