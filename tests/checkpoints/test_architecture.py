"""``checkpoints.architecture``: one reader of a checkpoint's architecture and class names, for a ``.pt`` and an
attnyolo ``.safetensors`` alike (issue 19: the fine-tuning reader dropped the names a ``.safetensors`` carries)."""

from __future__ import annotations

import json

import torch
from model_helpers import save_ultralytics

import attnyolo
from attnyolo.checkpoints import architecture, load_checkpoint, safetensors_metadata, save_safetensors
from attnyolo.finetune import load_base
from attnyolo.weights import load_source

NAMES = {0: "RBC", 1: "WBC", 2: "Platelets"}


def _model():
    model = attnyolo.build("yolov8n.yaml", nc=3)
    model.names = dict(NAMES)
    return model


def test_a_pt_and_its_safetensors_give_the_same_architecture_and_names(tmp_path):
    model = _model()
    pt = save_ultralytics(model, tmp_path / "m.pt")
    st = save_safetensors(model, tmp_path / "m.safetensors")
    assert json.loads(safetensors_metadata(st)["names"]) == {str(k): v for k, v in NAMES.items()}  # the file's own
    from_pt, from_st = architecture(pt), architecture(st)
    assert from_pt.names == from_st.names == NAMES and from_pt.nc == from_st.nc == 3
    assert from_pt.cfg == model.yaml and from_st.cfg["head"] == model.yaml["head"]
    # a loaded checkpoint gives the same answer: the .safetensors' metadata comes from the path it was loaded from
    assert architecture(load_checkpoint(st), path=st) == from_st
    assert architecture(load_checkpoint(st)) == type(from_st)(None, None)  # a bare state dict carries nothing


def test_every_reader_takes_the_names_of_the_shipped_safetensors_base():
    base = attnyolo.__file__.replace("__init__.py", "data/base_yolov8n_bccd.safetensors")
    assert load_base(base).names == load_source(base).names == architecture(base).names == NAMES
    assert load_base(base).nc == 3


def test_a_state_dict_pt_has_no_architecture(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(_model().state_dict(), path)
    assert architecture(path).cfg is None and architecture(path).names is None and architecture(path).nc is None
