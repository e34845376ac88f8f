"""`ablate --executor ray --address`: a real two-node Ray cluster started as the README says (head + a second
`ray start --address` node, token authentication), and clusters that cannot be reached: one line in bounded time,
the grid folder untouched.

The cluster's nodes run as `ray start --block` children of the test (their own process groups, temp dir and
ports), so the teardown stops exactly them: `ray stop` would stop every Ray process on the machine, other users'
too. Every wait has a timeout.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from grid_helpers import tiny_grid

from attnyolo.cli import main
from attnyolo.experiments.store import ResultsStore

ray = pytest.importorskip("ray")
RAY = str(Path(sys.executable).with_name("ray"))
CLI = "import sys; from attnyolo.cli import main; sys.exit(main(sys.argv[1:]))"
NODE_START_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_ports() -> list[str]:
    # Every port a node opens, free ones: two nodes on one machine (and other users' Ray) must not collide.
    names = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")  # fmt: skip
    return [arg for name in names for arg in (name, str(_free_port()))]


def _wait_for(what: str, ready, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + NODE_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited (rc {proc.returncode}): {log.read_text()[-2000:]}")
        time.sleep(0.5)
    raise AssertionError(f"{what} did not start within {NODE_START_TIMEOUT_S} s: {log.read_text()[-2000:]}")


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:  # SIGTERM: `ray start --block` drains and stops its node's processes
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only this node's processes
            proc.wait(30)


@pytest.fixture(scope="module")
def cluster():
    """A head and one joined node, 1 CPU each, token authentication, on 127.0.0.1: ``(address, env)``."""
    tmp = Path(tempfile.mkdtemp(prefix="ay-ray-", dir="/tmp"))  # short: Ray's unix sockets live below it
    token = tmp / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1"]
    procs: list[subprocess.Popen] = []
    try:
        head_log, node_log = tmp / "head.log", tmp / "node.log"
        head = subprocess.Popen([RAY, "start", "--head", "--port", str(port), "--include-dashboard=false",
                                 "--temp-dir", str(tmp), *common, *_node_ports()], env=env, start_new_session=True,
                                stdout=head_log.open("w"), stderr=subprocess.STDOUT)  # fmt: skip
        procs.append(head)
        _wait_for("the head", lambda: "Ray runtime started" in head_log.read_text(), head, head_log)
        node = subprocess.Popen([RAY, "start", "--address", address, *common, *_node_ports()], env=env,
                                start_new_session=True, stdout=node_log.open("w"),
                                stderr=subprocess.STDOUT)  # fmt: skip
        procs.append(node)
        _wait_for("the joining node", lambda: "Ray runtime started" in node_log.read_text(), node, node_log)
        yield address, env
    finally:
        _stop(procs[::-1])
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.slow
def test_grid_runs_to_completion_on_a_two_node_cluster(cluster, default_data, tmp_path):
    address, env = cluster
    config = tiny_grid(default_data) | {"attention": ["se"], "seeds": 1}  # 2 runs: one per node at a time
    grid_yaml = tmp_path / "grid.yaml"
    grid_yaml.write_text(yaml.safe_dump(config))
    folder = tmp_path / "grid"
    argv = ["ablate", str(grid_yaml), "-o", str(folder), "--executor", "ray", "--address", address, "--threads", "1",
            "--no-report"]  # fmt: skip
    out = subprocess.run([sys.executable, "-c", CLI, *argv], env=env, capture_output=True, text=True, timeout=900)
    print(out.stdout[-3000:], out.stderr[-3000:])
    assert out.returncode == 0, out.stderr[-3000:]
    with ResultsStore(folder) as store:
        rows = store.runs(None)
        assert store.integrity() == "ok"
    assert [r["run_id"] for r in rows] == ["baseline-s0", "se@neck-s0"]
    for r in rows:
        assert r["state"] == "done" and r["attempts"] == 1 and r["started"] <= r["finished"]
        assert r["epochs"] and r["params"] > 0 and 0 <= r["map50_95"] <= 1
        assert f"ablate: start {r['run_id']}" in out.stdout  # reported by its worker
        assert f"ablate: {r['run_id']} epoch 1/1" in out.stdout  # per-epoch progress from the workers


def _closed_port() -> int:
    return _free_port()  # bound and released: nothing listens there


def test_unreachable_address_is_one_line_at_once_and_writes_nothing(default_data, tmp_path, capsys):
    address = f"127.0.0.1:{_closed_port()}"
    grid_yaml = tmp_path / "grid.yaml"
    grid_yaml.write_text(yaml.safe_dump(tiny_grid(default_data)))
    folder = tmp_path / "grid"
    t0 = time.monotonic()
    rc = main(["ablate", str(grid_yaml), "-o", str(folder), "--executor", "ray", "--address", address])
    seconds = time.monotonic() - t0
    err = capsys.readouterr().err.strip()
    print(f"{seconds:.1f} s: {err}")
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"cannot reach the Ray cluster at --address {address}" in err and "ray start --head" in err
    assert seconds < 30
    assert not folder.exists()  # nothing written
    assert not ray.is_initialized()


def test_address_that_never_answers_fails_within_the_timeout_leaving_the_grid_as_it_was(default_data, tmp_path):
    """A port that accepts connections but never speaks Ray: Ray's connect loop would retry for ever."""
    grid_yaml = tmp_path / "grid.yaml"
    grid_yaml.write_text(yaml.safe_dump(tiny_grid(default_data)))
    folder = tmp_path / "grid"
    folder.mkdir()
    (folder / "runs").mkdir()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        argv = ["ablate", str(grid_yaml), "-o", str(folder), "--executor", "ray", "--address", address,
                "--ray-timeout", "5"]  # fmt: skip
        t0 = time.monotonic()
        out = subprocess.run([sys.executable, "-c", CLI, *argv], capture_output=True, text=True, timeout=120,
                             env=os.environ | {"RAY_USAGE_STATS_ENABLED": "0"})  # fmt: skip
        seconds = time.monotonic() - t0
    ours = [line for line in out.stderr.splitlines() if line.startswith("attnyolo:")]
    print(f"{seconds:.1f} s, rc {out.returncode}: {ours}")
    assert out.returncode == 2 and len(ours) == 1 and "Traceback" not in out.stderr
    assert f"the Ray cluster at --address {address} did not answer within 5 s" in ours[0]
    assert seconds < 60  # 5 s of waiting plus the start of a Python process on a loaded machine
    assert sorted(p.name for p in folder.iterdir()) == ["runs"]  # the folder as it was
