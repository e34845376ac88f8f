"""YOLOv5 v7.0 reaches the network from its own code (``attempt_download`` of release weights, ``check_online``,
``check_requirements``' pip install, ``check_git_status``' git fetch): attnyolo replaces them in every YOLOv5 module
it imports, so a missing checkpoint is a one-line error and nothing tries to connect."""

from __future__ import annotations

import socket

import pytest
from yolov5_helpers import code, requires_yolov5

from attnyolo.hosts.yolov5 import YOLOv5HostError
from attnyolo.hosts.yolov5.source import OFFLINE

pytestmark = requires_yolov5


@pytest.fixture
def connections(monkeypatch):
    """Every socket connection attempted during the test (each refused)."""
    attempts = []

    def refuse(self, address):
        attempts.append(address)
        raise OSError(f"network blocked in this test: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: attempts.append(a) or refuse(None, a))
    return attempts


def test_every_network_helper_of_the_imported_yolov5_modules_is_the_offline_stand_in():
    yolov5 = code()
    modules = [yolov5.module(name) for name in ("train", "val", "export", "models.experimental", "utils.general")]
    replaced = 0
    for module in modules:
        for attr, stand_in in OFFLINE.items():
            if hasattr(module, attr):
                assert getattr(module, attr) is stand_in, f"{module.__name__}.{attr}"
                replaced += 1
    assert replaced >= len(modules)  # each of them held at least one network helper


def test_loading_a_release_name_is_a_one_line_error_without_a_connection(tmp_path, monkeypatch, connections):
    monkeypatch.chdir(tmp_path)  # no yolov5s.pt here: YOLOv5 itself would download it from its GitHub release
    experimental = code().module("models.experimental")
    with pytest.raises(YOLOv5HostError) as e:
        experimental.attempt_load("yolov5s.pt", device="cpu")
    assert str(e.value).startswith("yolov5s.pt: no such file; attnyolo runs YOLOv5 offline and never downloads")
    assert "\n" not in str(e.value)
    general = code().module("utils.general")
    assert general.check_online() is False
    assert general.check_requirements(["definitely-not-installed-package"]) is None  # no pip install
    assert connections == []
