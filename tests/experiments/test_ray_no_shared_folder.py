"""Issue 23, item 2: `ablate --executor ray` and `search` on a worker that cannot see the driver's grid folder.

The cluster: a head with no CPUs (the driver's side: no run can land there) and one worker node started inside its
own mount namespace with a private tmpfs over the grid folder's parent, as a machine without a shared filesystem
would be. The worker still sees the data, the shipped base checkpoint and the Python environment (every node needs
those). Every run trains on the worker, in its own folder, and its files must reach the driver's
``GRID_DIR/runs/<run_id>`` through Ray, so that the report (per-image statistics, γ log, gallery from best.pt) works
on the driver. Nodes are `ray start --block` children of the test (see test_ray_cluster); every wait is bounded.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_ray_cluster import NODE_START_TIMEOUT_S, RAY, _free_port, _node_ports, _stop, _wait_for

from attnyolo.data.base_checkpoint import base_path
from attnyolo.experiments import valstats
from attnyolo.experiments.shipping import GRID_MARKER, WORKER_DIR_ENV
from attnyolo.experiments.store import ResultsStore
from attnyolo.report import write_report
from attnyolo.search.store import DB_NAME, SearchStore
from attnyolo.search.trainable import finished_epochs

pytestmark = pytest.mark.slow
CLI = "import sys; from attnyolo.cli import main; sys.exit(main(sys.argv[1:]))"
DRIVER_ONLY = "driver-only.txt"

# Runs one task on a node with a CPU (only the worker has one) and says what that node sees.
LOOK = """
import json, os, sys, ray
ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False)
def look(paths, folder):
    listing = sorted(os.listdir(folder)) if os.path.isdir(folder) else None
    return {"exists": {p: os.path.exists(p) for p in paths}, "listing": listing}
print(json.dumps(ray.get(ray.remote(num_cpus=1)(look).remote(sys.argv[3:], sys.argv[2]), timeout=120)))
"""


def _unshare_works() -> bool:
    try:
        out = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, timeout=9)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0


@pytest.fixture(scope="module")
def private_worker_cluster():
    """``(address, env, driver_parent, scratch)``: a 0-CPU head and a 1-CPU worker whose view of ``driver_parent``
    is a private, empty tmpfs; the worker trains in ``scratch``, inside that tmpfs (on no disk the driver sees)."""
    if not _unshare_works():
        pytest.skip("needs `unshare --mount` (root or user namespaces) to give the worker a private folder")
    tmp = Path(tempfile.mkdtemp(prefix="ay-ns-", dir="/tmp"))  # short: Ray's unix sockets live below it
    driver_parent = tmp / "driver"
    driver_parent.mkdir()
    (driver_parent / DRIVER_ONLY).write_text("the driver's disk\n")
    scratch = driver_parent / "worker-scratch"  # only the worker's tmpfs has it
    token = tmp / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--block", "--node-ip-address", "127.0.0.1"]
    procs: list[subprocess.Popen] = []
    try:
        head_log, node_log = tmp / "head.log", tmp / "node.log"
        head = subprocess.Popen([RAY, "start", "--head", "--port", str(port), "--include-dashboard=false",
                                 "--temp-dir", str(tmp), "--num-cpus", "0", *common, *_node_ports()], env=env,
                                start_new_session=True, stdout=head_log.open("w"),
                                stderr=subprocess.STDOUT)  # fmt: skip
        procs.append(head)
        _wait_for("the head", lambda: "Ray runtime started" in head_log.read_text(), head, head_log)
        node_cmd = " ".join([RAY, "start", "--address", address, "--num-cpus", "1", *common, *_node_ports()])
        # unshare execs sh, sh execs ray start: the Popen's pid is the node's `ray start --block`
        node = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                 f"mount -t tmpfs tmpfs {driver_parent} && exec {node_cmd}"],
                                env=env | {WORKER_DIR_ENV: str(scratch)}, start_new_session=True,
                                stdout=node_log.open("w"), stderr=subprocess.STDOUT)  # fmt: skip
        procs.append(node)
        _wait_for("the private worker", lambda: "Ray runtime started" in node_log.read_text(), node, node_log)
        yield address, env, driver_parent, scratch
    finally:
        _stop(procs[::-1])
        shutil.rmtree(tmp, ignore_errors=True)


def _worker_sees(address: str, env: dict, folder: Path, paths: list[Path]) -> dict:
    out = subprocess.run([sys.executable, "-c", LOOK, address, str(folder), *map(str, paths)], env=env,
                         capture_output=True, text=True, timeout=NODE_START_TIMEOUT_S + 120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_runs_on_a_worker_without_the_driver_folder_reach_the_driver_and_the_report(
    private_worker_cluster, default_data
):
    address, env, driver_parent, scratch = private_worker_cluster
    folder = driver_parent / "grid"
    config = {"data": str(default_data), "weights": str(base_path()), "attention": ["se"], "where": "neck",
              "seeds": 1, "recipe": {"epochs": 1, "imgsz": 64, "batch": 16, "workers": 0, "device": "cpu",
                                     "plots": False, "fraction": 0.5}}  # fmt: skip
    grid_yaml = driver_parent / "grid.yaml"
    grid_yaml.write_text(yaml.safe_dump(config))
    argv = ["ablate", str(grid_yaml), "-o", str(folder), "--executor", "ray", "--address", address, "--threads", "1",
            "--no-report"]  # fmt: skip
    out = subprocess.run([sys.executable, "-c", CLI, *argv], env=env, capture_output=True, text=True, timeout=1200)
    print(out.stdout[-3000:], out.stderr[-3000:])
    assert out.returncode == 0, out.stderr[-3000:]

    # the worker's view: none of the driver's files, its own folder of this grid with no run left in it
    grid_token = (folder / "runs" / GRID_MARKER).read_text().strip()
    own_runs = scratch / grid_token / "runs"
    seen = _worker_sees(address, env, own_runs, [driver_parent / DRIVER_ONLY, folder, default_data])
    print(seen)
    assert seen["exists"] == {str(driver_parent / DRIVER_ONLY): False, str(folder): False, str(default_data): True}
    assert seen["listing"] == []  # both runs trained there; each folder was removed once shipped
    assert not scratch.exists()  # and that folder is on no disk the driver sees

    with ResultsStore(folder) as store:
        rows = store.runs(None)
    val_names = sorted(p.name for p in (Path(default_data).parent / "images" / "val").glob("*.jpg"))
    assert val_names
    assert [r["run_id"] for r in rows] == ["baseline-s0", "se@neck-s0"]
    for r in rows:
        assert r["state"] == "done", r
        # trained in the worker's own folder (Ultralytics' args record where), shipped to the driver's
        assert r["config"]["train_args"]["save_dir"] == str(own_runs / r["run_id"])
        run_dir = folder / r["run_dir"]
        assert run_dir == folder / "runs" / r["run_id"]
        names = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}
        assert {"val_stats.npz", "results.csv", "args.yaml", "weights/best.pt", "attnyolo_transfer.txt"} <= names
        assert not names & {"weights/last.pt", "weights/start.pt"}  # left on the worker (see shipping)
        # the per-image statistics on the driver are the run's: one record per validation image of the data
        stats = valstats.load(folder / r["val_stats"])
        assert sorted(Path(n).name for n in stats["images"]) == val_names
        epochs = [line for line in (run_dir / "results.csv").read_text().splitlines()[1:] if line.strip()]
        assert len(epochs) == len(r["epochs"]) == 1
    se_dir = folder / "runs" / "se@neck-s0"
    gamma_rows = (se_dir / "attnyolo_gamma.csv").read_text().splitlines()[1:]
    assert len(gamma_rows) == len(rows[1]["gamma"]) > 0  # the γ log on disk is the one the row holds

    a, md, page = write_report(folder, resamples=200, gallery=1, progress=None)
    text = md.read_text()
    assert "se@neck" in text and "no gallery" not in text  # the gallery read both runs' best.pt on the driver
    assert page.is_file()


def _rungs(folder: Path) -> list[tuple]:
    with SearchStore(folder) as store:
        return [(r["label"], r["rung"], r["epoch"]) for r in store.rungs()]


def _csv_epochs(run_dir: Path) -> list[int]:
    lines = (run_dir / "results.csv").read_text().splitlines()[1:]
    return [int(float(line.split(",")[0])) for line in lines if line.strip()]


def test_a_search_on_a_worker_without_the_driver_folder_mirrors_its_runs_and_resumes_after_a_kill(
    private_worker_cluster, default_data
):
    """Every candidate trains on the worker; the driver's OUT/runs/<candidate> receives each epoch before ASHA sees
    its score. The driver is killed while the first candidate trains its second epoch; the same command then
    continues it on the worker from the driver's copy (epoch 1 is not trained again), and the search ends."""
    address, env, driver_parent, scratch = private_worker_cluster
    folder = driver_parent / "search"
    argv = ["search", "-a", "se", "-w", "neck,inside", "--weights", str(base_path()), "--data", str(default_data),
            "--grace", "1", "--eta", "2", "--rungs", "2", "--no-confirm", "--address", address, "--threads", "1",
            "--attention-recipe", "none",  # no lead-in: the run's epochs are the rungs' (test_search_tiny has one)
            "-o", str(folder), "imgsz=64", "batch=16", "workers=0", "plots=False", "fraction=0.5"]  # fmt: skip
    first = subprocess.Popen([sys.executable, "-c", CLI, *argv], env=env, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while not (folder / DB_NAME).is_file() or not _rungs(folder):
            assert first.poll() is None, first.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no rung was recorded within 600 s"
            time.sleep(0.2)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the driver and its CLI, mid-way through se@neck's second epoch
        first.wait(60)
    assert _rungs(folder) == [("se@neck", 0, 1)]
    killed = folder / "runs" / "se@neck"
    assert _csv_epochs(killed) == [1]  # the driver's copy holds the scored epoch, with a last.pt to go on from
    assert torch.load(killed / "weights" / "last.pt", map_location="cpu", weights_only=False)["optimizer"] is not None

    out = subprocess.run([sys.executable, "-c", CLI, *argv], env=env, capture_output=True, text=True, timeout=1200)
    print(out.stdout[-3000:], out.stderr[-3000:])
    assert out.returncode == 0, out.stderr[-3000:]

    assert {("se@neck", 0, 1), ("se@neck", 1, 2), ("se@inside", 0, 1)} <= set(_rungs(folder))
    assert _csv_epochs(killed) == [1, 2]  # epoch 1 trained once, in the first session; epoch 2 after the resume
    assert finished_epochs(killed) == 2  # the driver's last.pt is the second epoch's: nothing left to train
    args = yaml.safe_load((killed / "args.yaml").read_text())
    token = (folder / "runs" / GRID_MARKER).read_text().strip()
    assert args["save_dir"] == str(scratch / token / "runs" / "se@neck")  # trained on the worker's own disk
    seen = _worker_sees(address, env, scratch / token / "runs", [folder])
    assert seen["exists"] == {str(folder): False} and "se@neck" in seen["listing"]
    assert "se@neck" in (folder / "report.md").read_text()
