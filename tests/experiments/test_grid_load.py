"""A grid variant's ``load``: attnyolo's transfer (default) or Ultralytics' key matching (the positive control)."""

from __future__ import annotations

import pytest
import torch

from attnyolo.data.base_checkpoint import base_path
from attnyolo.experiments.grid import GridError, Variant, differences, resolve
from attnyolo.experiments.runner import start_model

NAMES = {0: "RBC", 1: "WBC", 2: "Platelets"}


def _grid(default_data, **variant):
    return resolve({"data": str(default_data), "weights": str(base_path()), "variants": [variant]}, check=False)


def test_load_keys_is_its_own_variant_and_transfer_stays_the_default(default_data):
    grid = resolve(
        {"data": str(default_data), "weights": str(base_path()), "variants": [
            {"attention": "cbam", "where": "backbone"},
            {"attention": "cbam", "where": "backbone", "load": "keys"},
            {"attention": "cbam", "where": "backbone", "load": "transfer"},  # the same as the first: collapses
        ]}, check=False,
    )  # fmt: skip
    assert [v.label for v in grid.variants] == ["baseline", "cbam@backbone", "cbam@backbone+load=keys"]
    assert [v.load for v in grid.variants] == ["transfer", "transfer", "keys"]
    stored = grid.config()["variants"]
    assert "load" not in stored[1] and stored[2]["load"] == "keys"  # grids written before `load` resume as they were
    assert resolve(grid.config(), check=False).config() == grid.config()
    assert differences(grid.config(), grid.config()) == []


@pytest.mark.parametrize("value", ["key", "KEYS", 1, None, ["keys"]])
def test_an_unknown_load_is_one_line_naming_it_and_the_allowed_values(default_data, value):
    with pytest.raises(GridError, match=r"load must be one of transfer, keys .*got " + repr(value).replace("[", r"\[")):
        _grid(default_data, attention="cbam", where="backbone", load=value)


def test_a_keys_variant_starts_from_ultralytics_key_matching(default_data):
    grid = _grid(default_data, attention="cbam", where="backbone", load="keys")
    keys = start_model(grid, grid.variants[1], seed=0, nc=3, names=NAMES)
    transfer = start_model(grid, Variant("cbam", "backbone"), seed=0, nc=3, names=NAMES)
    assert keys.report.counts["transferred"] == 91 and keys.report.index_map_source == "key matching"
    assert transfer.report.counts["transferred"] == 355
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():  # the shifted backbone no longer computes the base's function
        assert not torch.allclose(keys.model.eval()(x)[0], transfer.model.eval()(x)[0], atol=1e-3)
