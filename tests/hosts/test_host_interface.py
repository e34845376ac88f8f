"""The host interface: one Protocol, two hosts, picked by the YAML's format; the YOLOv5 host's round trip."""

from __future__ import annotations

import torch
from yolov5_helpers import original_yaml, requires_yolov5

import attnyolo
from attnyolo.hosts.base import Host
from attnyolo.hosts.select import host_for
from attnyolo.hosts.ultralytics import UltralyticsHost


def test_an_ultralytics_yaml_gets_the_ultralytics_host():
    host = host_for("yolov8n.yaml")
    assert isinstance(host, UltralyticsHost) and isinstance(host, Host) and host.name == "ultralytics"
    assert host.builds(attnyolo.load("yolov8n.yaml"))


@requires_yolov5
def test_an_original_yaml_gets_the_yolov5_host_whose_checkpoints_round_trip(tmp_path):
    cfg, _ = attnyolo.insert(str(original_yaml("yolov5n")), "se", where="neck")
    host = host_for(cfg)
    assert isinstance(host, Host) and host.name == "yolov5" and host.builds(cfg)
    assert not UltralyticsHost().builds(cfg)
    model = host.build(cfg, nc=3)
    path = host.save_checkpoint(model, tmp_path / "m.pt", {"note": "test"})
    loaded = host.load_checkpoint(path)
    assert type(loaded["model"]) is type(model) and loaded["attnyolo"] == {"note": "test"}
    for key, value in model.state_dict().items():
        assert torch.equal(loaded["model"].state_dict()[key], value), key
