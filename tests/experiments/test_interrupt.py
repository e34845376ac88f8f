"""Ctrl-C (a real SIGINT) while a run trains: one line on stderr saying what was kept and the command that resumes,
exit code 130; that very command then completes the grid with the rows of a clean run."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys

import pytest
import yaml
from grid_helpers import assert_same_rows, states, wait_until_training

from attnyolo.cli import main
from attnyolo.experiments.store import ResultsStore

pytestmark = pytest.mark.slow
CLI = "import sys; from attnyolo.cli import main; sys.exit(main(sys.argv[1:]))"


def test_sigint_during_training_is_one_line_exit_130_and_its_command_resumes(clean_grid, grid_config, tmp_path):
    grid_yaml = tmp_path / "grid.yaml"
    grid_yaml.write_text(yaml.safe_dump(grid_config))
    folder = tmp_path / "grid"
    argv = [sys.executable, "-c", CLI, "ablate", str(grid_yaml), "-o", str(folder)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        stopped_run = wait_until_training(folder, proc)
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"SIGINT while {stopped_run} trained: rc {proc.returncode}, stderr: {err!r}")
    assert proc.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines

    after = states(folder / "ablate.sqlite")
    done = sum(s == "done" for s in after.values())
    db = folder / "ablate.sqlite"
    resume = f"attnyolo ablate -o {folder} --resume"
    assert lines[0] == (
        f"attnyolo: interrupted: {done} of {len(after)} runs done and kept in {db}; {stopped_run} marked "
        f"interrupted; resume with: {resume}"
    )
    with ResultsStore(folder) as store:
        stopped = next(r for r in store.runs(None) if r["run_id"] == stopped_run)
        kept = {r["run_id"]: r["finished"] for r in store.runs("done")}
    assert stopped["state"] == "failed" and stopped["error"] == "interrupted"
    assert 0 < len(kept) < len(after)

    argv = shlex.split(lines[0].split("resume with: ", 1)[1])
    assert argv[0] == "attnyolo" and main(argv[1:]) == 0  # the printed command, as given

    with ResultsStore(folder) as store:
        rows = store.runs(None)
        assert store.integrity() == "ok"
    with ResultsStore(clean_grid) as clean:
        assert_same_rows(rows, clean.runs(None))
    for r in rows:  # kept runs were not redone; the interrupted one ran again
        if r["run_id"] in kept:
            assert r["finished"] == kept[r["run_id"]] and r["attempts"] == 1
    assert next(r for r in rows if r["run_id"] == stopped_run)["attempts"] == 2
