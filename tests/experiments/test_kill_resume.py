"""A real SIGKILL while a run trains, then --resume: the same rows as a clean run, a sound database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import yaml
from grid_helpers import assert_same_rows, differences, states, wait_until_training

from attnyolo.cli import main
from attnyolo.experiments.store import ResultsStore

pytestmark = pytest.mark.slow
CLI = "import sys; from attnyolo.cli import main; sys.exit(main(sys.argv[1:]))"


def test_sigkill_during_training_then_resume_gives_the_clean_rows(clean_grid, grid_config, tmp_path, capsys):
    grid_yaml = tmp_path / "grid.yaml"
    grid_yaml.write_text(yaml.safe_dump(grid_config))
    folder = tmp_path / "grid"
    proc = subprocess.Popen([sys.executable, "-c", CLI, "ablate", str(grid_yaml), "-o", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())  # fmt: skip
    try:
        killed_run = wait_until_training(folder, proc)
        os.kill(proc.pid, signal.SIGKILL)
        assert not (folder / "runs" / killed_run / "results.csv").exists()  # killed before its epoch ended
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    leftover = folder / "runs" / f".{killed_run}-start.pt"
    assert leftover.is_file()  # the killed attempt's temporary start file: the kill could not remove it
    at_kill = states(folder / "ablate.sqlite")
    print(f"killed pid {proc.pid} (rc {proc.returncode}) while {killed_run} was training; states: {at_kill}")
    assert proc.returncode == -signal.SIGKILL and at_kill[killed_run] == "running"
    done_before = {r: s for r, s in at_kill.items() if s == "done"}
    with ResultsStore(folder) as store:
        finished_before = {r["run_id"]: r["finished"] for r in store.runs()}

    assert main(["ablate", "-o", str(folder), "--resume"]) == 0

    with ResultsStore(folder) as store:
        rows = store.runs(None)
        integrity = store.integrity()
    with ResultsStore(clean_grid) as clean:
        clean_rows = clean.runs(None)
    print(f"after --resume: {[(r['run_id'], r['state'], r['attempts']) for r in rows]}; integrity_check: {integrity}")
    assert integrity == "ok"
    assert not leftover.exists() and not list((folder / "runs").glob(".*-start.pt"))
    print(f"resumed vs clean, largest differences: {differences(rows, clean_rows)}")
    assert_same_rows(rows, clean_rows, exact=True)  # every run once, all done, same metrics as the clean run
    for r in rows:  # finished runs were kept, not redone; the killed one ran a second time
        if r["run_id"] in done_before:
            assert r["finished"] == finished_before[r["run_id"]] and r["attempts"] == 1
    assert next(r for r in rows if r["run_id"] == killed_run)["attempts"] == 2
    with capsys.disabled():
        print(
            "\n"
            + "\n".join(
                line for line in capsys.readouterr().out.splitlines() if line.startswith(("killed", "after", "resumed"))
            )
        )
