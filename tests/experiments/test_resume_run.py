"""A run killed after a finished epoch and resumed: its train_seconds counts both attempts, and the temporary start
file the kill left behind is removed (issue 20, item 6)."""

from __future__ import annotations

import pytest

from attnyolo.experiments.grid import Variant, resolve
from attnyolo.experiments.runner import RUNS, RunTask, run_one, start_file, train_seconds


def test_train_seconds_adds_the_attempts_of_a_resumed_run():
    first = [{"epoch": 1, "time": 10.0}, {"epoch": 2, "time": 20.5}]
    assert train_seconds(first) == 20.5
    # killed during epoch 3, resumed from epoch 2's last.pt: Ultralytics' clock starts again at 0
    assert train_seconds([*first, {"epoch": 3, "time": 9.0}, {"epoch": 4, "time": 19.0}], [3]) == 20.5 + 19.0
    # the resumed attempt's first epoch took longer than everything before it (a loaded machine): still a new attempt
    assert train_seconds([*first, {"epoch": 3, "time": 25.0}], [3]) == 20.5 + 25.0
    # killed after epoch 3's row was written but before its last.pt: epoch 3 runs again, from epoch 2's time
    again = [*first, {"epoch": 3, "time": 31.0}, {"epoch": 3, "time": 11.0}, {"epoch": 4, "time": 21.0}]
    assert train_seconds(again, [3]) == 20.5 + 21.0
    # two resumes: from epoch 2 (attempt starts at 3) and from epoch 3 (attempt starts at 4)
    twice = [*first, {"epoch": 3, "time": 9.0}, {"epoch": 4, "time": 2.0}]
    assert train_seconds(twice, [3, 4]) == 20.5 + 9.0 + 2.0
    assert train_seconds([]) is None and train_seconds([{"epoch": 1, "time": "x"}]) is None


class Killed(Exception):
    pass


@pytest.mark.slow
def test_a_resumed_run_counts_the_time_before_the_kill_and_removes_the_temporary_start_file(default_data, tmp_path):
    grid = resolve({"data": str(default_data), "model": "yolov8n.yaml", "attention": ["se"],
                    "recipe": {"epochs": 2, "imgsz": 64, "batch": 16, "workers": 0, "device": "cpu", "plots": False,
                               "fraction": 0.25}}, check=False)  # fmt: skip
    variant = Variant("se", "neck")
    task = RunTask(str(tmp_path), "se@neck-s0", grid.config(), variant.as_dict(), 0, 1).__dict__

    def kill_in_the_second_epoch(run_id: str, epoch: int, epochs: int) -> None:
        if epoch == 2:  # epoch 2's training is over, its last.pt not written: last.pt holds epoch 1
            raise Killed

    with pytest.raises(Killed):
        run_one(task, on_epoch=kill_in_the_second_epoch)
    run = tmp_path / RUNS / "se@neck-s0"
    assert (run / "weights" / "last.pt").is_file() and (run / "weights" / "start.pt").is_file()
    leftover = start_file(tmp_path / RUNS, "se@neck-s0")
    leftover.write_bytes(b"what a SIGKILL leaves behind")  # (the exception above removed the real one)

    result = run_one(task)
    assert not leftover.exists()
    times = [row["time"] for row in result["epochs"]]
    assert [row["epoch"] for row in result["epochs"]] == [1, 2]
    assert times[1] < times[0] + times[1]  # the resumed attempt's clock started again
    assert result["train_seconds"] == pytest.approx(times[0] + times[1])
