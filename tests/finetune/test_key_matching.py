"""The positive control: a base loaded into an edited model by Ultralytics' key matching, as
``yolo train model=EDITED.yaml pretrained=BASE.pt`` does (attnyolo.finetune.key_matching.load_by_keys)."""

from __future__ import annotations

import pytest
import torch
from ultralytics.utils.torch_utils import intersect_dicts

import attnyolo
from attnyolo.data.base_checkpoint import base_path, load_base
from attnyolo.finetune.key_matching import load_by_keys


@pytest.mark.parametrize(("where", "kept"), [("backbone", 91), ("neck", 210)])
def test_key_matching_keeps_exactly_what_ultralytics_keeps(where, kept):
    base = load_base()
    cfg, _ = attnyolo.insert(dict(base.yaml), "cbam", where)
    torch.manual_seed(0)
    ours = attnyolo.build(cfg, nc=3)
    theirs = attnyolo.build(cfg, nc=3)
    theirs.load_state_dict(ours.state_dict())  # the same random start for the tensors nobody fills

    report = load_by_keys(ours, base_path())
    reference = intersect_dicts(base.float().state_dict(), theirs.state_dict())  # Ultralytics' own function
    assert sorted(k for k, _ in report.transferred) == sorted(reference)  # the same names
    assert len(reference) == kept and report.counts["key_matching"] == kept
    assert report.counts["source"] == 355 and report.counts["skipped"] == 355 - kept
    assert sorted(report.newly_initialised) == sorted(set(ours.state_dict()) - set(reference))

    theirs.load(base, verbose=False)  # what `yolo train model=EDITED.yaml pretrained=BASE.pt` runs
    got, want = ours.state_dict(), theirs.state_dict()
    assert [k for k in want if not torch.equal(got[k], want[k])] == []


def test_attnyolo_transfer_keeps_every_tensor_where_key_matching_loses_most():
    base = load_base()
    cfg, imap = attnyolo.insert(dict(base.yaml), "cbam", "backbone")
    report = attnyolo.transfer(attnyolo.build(cfg, nc=3), base_path(), imap)
    assert report.counts["transferred"] == 355 and report.counts["key_matching"] == 91
