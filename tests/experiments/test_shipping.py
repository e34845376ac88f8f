"""Packing a run folder on a worker and writing it into the driver's grid folder (:mod:`attnyolo.experiments.shipping`):
the bytes arrive unchanged, the driver's run folder is replaced as a whole, and no name can write outside it."""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

import pytest

from attnyolo.experiments import shipping, valstats
from attnyolo.experiments.grid import Variant, resolve
from attnyolo.experiments.ray_executor import receive_files, run_shipped
from attnyolo.experiments.runner import ATTEMPTS, RUNS, RunTask
from attnyolo.experiments.shipping import ShippingError, pack_run, unpack_run


def _run_folder(root: Path) -> dict[str, bytes]:
    """A run folder as Ultralytics and attnyolo leave it; returns what is on disk, by relative path."""
    content = {
        "args.yaml": b"epochs: 1\nimgsz: 64\n",
        "results.csv": b"epoch,time\n1,2.5\n",
        "val_stats.npz": os.urandom(3000),
        "attnyolo_gamma.csv": b"epoch,layer,gamma\n1,16,0.01\n",
        "attnyolo_transfer.txt": "transfer: 355 tensors \u2192 ok\n".encode(),
        "weights/best.pt": os.urandom(50_000),
        "weights/last.pt": os.urandom(60_000),
        "weights/start.pt": os.urandom(70_000),
        "weights/epoch3.pt": os.urandom(100),
        "plots/nested/deep.png": os.urandom(10),
    }
    for name, data in content.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return content


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_pack_takes_every_file_but_the_training_checkpoints_and_links(tmp_path):
    run = tmp_path / "worker" / "runs" / "se@neck-s0"
    run.mkdir(parents=True)
    on_disk = _run_folder(run)
    outside = tmp_path / "secret.txt"
    outside.write_text("not the run's")
    (run / "link.txt").symlink_to(outside)
    (run / "linked_dir").symlink_to(tmp_path, target_is_directory=True)
    files = pack_run(run)
    left = {"weights/last.pt", "weights/start.pt", "weights/epoch3.pt"}
    assert files == {k: v for k, v in on_disk.items() if k not in left}
    assert list(files) == sorted(files)


def test_packed_files_survive_pickling_and_unpack_byte_for_byte(tmp_path):
    run = tmp_path / "worker" / "runs" / "baseline-s0"
    run.mkdir(parents=True)
    on_disk = _run_folder(run)
    files = pickle.loads(pickle.dumps(pack_run(run)))  # what Ray does to the task's return value
    driver_runs = tmp_path / "driver" / "runs"
    out = unpack_run(files, driver_runs, "baseline-s0")
    assert out == driver_runs / "baseline-s0"
    left = {"weights/last.pt", "weights/start.pt", "weights/epoch3.pt"}
    assert _tree(out) == {k: v for k, v in on_disk.items() if k not in left}
    assert _tree(out)["weights/best.pt"] == (run / "weights" / "best.pt").read_bytes()
    assert sorted(p.name for p in driver_runs.iterdir()) == ["baseline-s0"]  # no staging or temporary files left


def test_unpack_replaces_an_earlier_attempts_folder_as_a_whole(tmp_path):
    runs = tmp_path / "runs"
    old = runs / "se@neck-s0"
    (old / "weights").mkdir(parents=True)
    (old / "weights" / "last.pt").write_bytes(b"a killed attempt's resumable state")
    (old / "results.csv").write_text("epoch\n1\n2\n")
    new = {"results.csv": b"epoch\n1\n", "weights/best.pt": b"best"}
    unpack_run(new, runs, "se@neck-s0")
    assert _tree(old) == new  # the stale last.pt is gone: the folder holds this attempt's files only
    assert sorted(p.name for p in runs.iterdir()) == ["se@neck-s0"]


def test_unpacked_files_get_the_umask_permissions_as_other_files(tmp_path):
    previous = os.umask(0o022)
    try:
        unpack_run({"weights/best.pt": b"x", "results.csv": b"y"}, tmp_path / "runs", "r")
    finally:
        os.umask(previous)
    for name in ("weights/best.pt", "results.csv"):
        assert stat.S_IMODE((tmp_path / "runs" / "r" / name).stat().st_mode) == 0o644, name


@pytest.mark.parametrize("run_id", ["..", ".", "", "../grid", "a/b", "a\\b", "x\0y", None, 3])
def test_a_run_id_that_is_not_one_folder_name_is_refused(tmp_path, run_id):
    runs = tmp_path / "grid" / "runs"
    with pytest.raises(ShippingError, match="run id") as e:
        unpack_run({"results.csv": b"x"}, runs, run_id)
    assert len(str(e.value).splitlines()) == 1
    assert not (tmp_path / "grid").exists()  # nothing written anywhere


@pytest.mark.parametrize(
    "name", ["../escape.txt", "weights/../../escape.txt", "/tmp/escape.txt", "a//b", "./a", "a/.", "", "a\\..\\b"]
)
def test_a_file_name_that_could_leave_the_run_folder_is_refused_before_anything_is_written(tmp_path, name):
    runs = tmp_path / "grid" / "runs"
    (runs / "r").mkdir(parents=True)
    (runs / "r" / "results.csv").write_bytes(b"earlier")
    with pytest.raises(ShippingError, match="shipped file name") as e:
        unpack_run({"args.yaml": b"fine", name: b"evil"}, runs, "r")
    assert len(str(e.value).splitlines()) == 1
    assert _tree(tmp_path) == {"grid/runs/r/results.csv": b"earlier"}  # the earlier folder as it was, nothing else


def test_content_that_is_not_bytes_is_refused(tmp_path):
    with pytest.raises(ShippingError, match="not bytes"):
        unpack_run({"results.csv": "text"}, tmp_path / "runs", "r")
    assert not (tmp_path / "runs").exists()


def test_pack_of_a_missing_folder_is_one_line(tmp_path):
    with pytest.raises(ShippingError, match="does not exist on this worker"):
        pack_run(tmp_path / "nope")


def test_the_grid_token_is_kept_and_only_its_own_folder_matches(tmp_path):
    runs = tmp_path / "grid" / "runs"
    token = shipping.grid_token(runs)
    assert len(token) == 32 and int(token, 16) >= 0
    assert shipping.grid_token(runs) == token  # a resumed grid keeps it
    assert shipping.sees_driver_folder(runs, token)
    other = tmp_path / "same-name-elsewhere" / "runs"  # a worker's own folder at the driver's path
    other.mkdir(parents=True)
    assert not shipping.sees_driver_folder(other, token)
    assert not shipping.sees_driver_folder(runs, shipping.grid_token(other))  # another grid's token
    assert not shipping.sees_driver_folder(tmp_path / "missing", token)


def test_the_worker_folder_follows_the_environment_and_refuses_a_malformed_token(tmp_path, monkeypatch):
    token = "0123456789abcdef" * 2
    monkeypatch.setenv(shipping.WORKER_DIR_ENV, str(tmp_path / "scratch"))
    assert shipping.worker_grid_dir(token) == tmp_path / "scratch" / token
    monkeypatch.delenv(shipping.WORKER_DIR_ENV)
    assert shipping.worker_grid_dir(token).parent.name == "attnyolo-worker"
    with pytest.raises(ShippingError, match="32 hex digits"):
        shipping.worker_grid_dir("../../etc")


class Killed(Exception):
    pass


@pytest.mark.slow
def test_a_worker_without_the_driver_folder_trains_in_its_own_resumes_there_and_ships_the_run(
    default_data, tmp_path, monkeypatch
):
    """run_shipped (the Ray task's body, here without Ray) on a worker whose view of the grid path holds no marker of
    this grid: it trains in $ATTNYOLO_WORKER_DIR, a killed attempt's last.pt stays there and the next attempt on the
    same node continues from it; the finished run reaches the driver's folder through receive_files."""
    monkeypatch.setenv(shipping.WORKER_DIR_ENV, str(tmp_path / "worker"))
    driver = tmp_path / "driver"
    token = shipping.grid_token(tmp_path / "the-real-driver" / "runs")  # a token `driver` here does not hold
    grid = resolve({"data": str(default_data), "model": "yolov8n.yaml", "attention": ["se"],
                    "recipe": {"epochs": 2, "imgsz": 64, "batch": 16, "workers": 0, "device": "cpu", "plots": False,
                               "fraction": 0.25}}, check=False)  # fmt: skip
    task = RunTask(str(driver), "se@neck-s0", grid.config(), Variant("se", "neck").as_dict(), 0, 1).__dict__
    own = tmp_path / "worker" / token / RUNS / "se@neck-s0"

    def kill_in_the_second_epoch(run_id: str, epoch: int, epochs: int) -> None:
        if epoch == 2:  # epoch 2's training is over, its last.pt not written: last.pt holds epoch 1
            raise Killed

    out = run_shipped(task, token, kill_in_the_second_epoch)
    assert "Killed" in out["error"] and "files" not in out
    assert (own / "weights" / "last.pt").is_file()  # kept on the worker for a later attempt on this node
    assert not driver.exists()  # the worker never wrote the driver's path

    out = run_shipped(task, token)
    assert "ok" in out, out
    assert not own.exists()  # shipped, then removed from the worker
    assert [row["epoch"] for row in out["ok"]["epochs"]] == [1, 2]
    receive_files(task, out)
    run = driver / RUNS / "se@neck-s0"
    assert (run / ATTEMPTS).read_text().split() == ["2"]  # the second attempt continued at epoch 2
    assert (run / "weights" / "best.pt").read_bytes() == out["files"]["weights/best.pt"]
    assert valstats.load(run / "val_stats.npz")["images"].size > 0
    assert not (run / "weights" / "last.pt").exists() and not (run / "weights" / "start.pt").exists()
    assert out["ok"]["run_dir"] == f"{RUNS}/se@neck-s0"  # the row's relative paths hold on the driver
