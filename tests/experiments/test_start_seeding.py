"""Every run's start model is a pure function of (grid, variant, seed) (issue 20, item 1): the same tensors in two
fresh processes and in either run order, with and without a class-count change, with attention; and the start of
a grid run is the start of ``finetune()`` (one start path, issue 19)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attnyolo.data.check import check_data
from attnyolo.experiments.grid import Variant, resolve
from attnyolo.experiments.runner import start_model
from attnyolo.finetune import prepare

BASE = Path(__file__).resolve().parents[2] / "attnyolo" / "data" / "base_yolov8n_bccd.safetensors"
CBAM = Variant("cbam", "neck")


def _grid(data):
    return resolve({"data": str(data), "weights": str(BASE), "attention": ["cbam"]}, check=False)


def _start(data, variant: Variant, seed: int) -> dict[str, torch.Tensor]:
    info = check_data(data)
    start = start_model(_grid(data), variant, seed, int(info["nc"]), dict(info["names"]))
    return {k: v.detach().clone() for k, v in start.model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _datas(default_data, one_class_data):
    return {"nc3": default_data, "nc1": one_class_data}


CASES = [(key, variant) for key in ("nc3", "nc1") for variant in (Variant(), CBAM)]
"""Without and with a class-count change (3-class base, 3- and 1-class data), baseline and attention."""

SCRIPT = """
import sys, torch
from attnyolo.experiments.grid import Variant
sys.path.insert(0, {here!r})
from test_start_seeding import _start
torch.rand(int(sys.argv[1]))  # a process whose generator has been used differently before the runs
datas = {datas!r}
order = {order!r}
runs = sorted(order, reverse=sys.argv[3] == "1")
torch.save({{i: _start(datas[order[i][0]], Variant(**order[i][1]), 1) for i in runs}}, sys.argv[2])
"""


@pytest.mark.slow  # no training, but two fresh interpreters building four starts each: about a minute
def test_start_tensors_are_the_same_in_two_fresh_processes(default_data, one_class_data, tmp_path):
    datas = {k: str(v) for k, v in _datas(default_data, one_class_data).items()}
    order = {i: (key, variant.as_dict()) for i, (key, variant) in enumerate(CASES)}
    script = SCRIPT.format(here=str(Path(__file__).parent), datas=datas, order=order)
    got = []
    for run, draws in enumerate((3, 1000)):  # the second process also builds the runs in the reverse order
        out = tmp_path / f"start{run}.pt"
        proc = subprocess.run([sys.executable, "-c", script, str(draws), str(out), str(run)], capture_output=True,
                              text=True, timeout=600)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        got.append(torch.load(out, weights_only=True))
    for i, (key, variant) in enumerate(CASES):
        assert _same(got[0][i], got[1][i]), (key, variant)
        assert _same(got[0][i], _start(datas[key], variant, 1)), (key, variant)  # and here, after other draws
        # control: the tensors that are new in the run (the attention's own, the class convs of another class
        # count) come from the seed: another seed gives others, so the equalities above are not of constants
        other = _start(datas[key], variant, 2)
        new = sorted(k for k in got[0][i] if k.endswith("weight") and not torch.equal(got[0][i][k], other[k]))
        head = 25 if variant == CBAM else 22
        class_convs = [f"model.{head}.cv3.{j}.2.weight" for j in range(3)] if key == "nc1" else []
        attention = [k for k in new if k.startswith(("model.16.", "model.20.", "model.24."))]
        assert [k for k in new if k not in attention] == class_convs, (key, variant)
        assert bool(attention) == (variant == CBAM), (key, variant)


@pytest.mark.parametrize("data_key", ["nc3", "nc1"])
def test_start_tensors_do_not_depend_on_the_run_order(default_data, one_class_data, data_key):
    data = _datas(default_data, one_class_data)[data_key]
    rng = torch.get_rng_state()
    first = [_start(data, v, 0) for v in (CBAM, Variant("se", "neck"))]
    second = [_start(data, v, 0) for v in (Variant("se", "neck"), CBAM)][::-1]
    assert all(_same(a, b) for a, b in zip(first, second, strict=True))
    assert torch.equal(torch.get_rng_state(), rng)  # nothing else in the process was disturbed


def test_from_scratch_starts_are_seeded_and_leave_the_process_generator_alone(default_data):
    grid = resolve({"data": str(default_data), "model": "yolov8n.yaml", "attention": ["se"]}, check=False)
    names = {0: "RBC", 1: "WBC", 2: "Platelets"}
    rng = torch.get_rng_state()
    a = start_model(grid, Variant("se", "neck"), 0, 3, names).model.state_dict()
    torch.rand(100)
    b = start_model(grid, Variant("se", "neck"), 0, 3, names).model.state_dict()
    c = start_model(grid, Variant("se", "neck"), 1, 3, names).model.state_dict()
    assert _same(a, b) and not _same(a, c)
    torch.set_rng_state(rng)
    torch.rand(100)
    after = torch.get_rng_state()
    torch.set_rng_state(rng)
    start_model(grid, Variant(), 0, 3, names)
    torch.rand(100)
    assert torch.equal(torch.get_rng_state(), after)


def test_finetune_and_a_grid_run_start_from_the_same_tensors(one_class_data):
    data = one_class_data  # a class change and attention: every kind of new tensor
    prepared = prepare(BASE, "cbam", "neck", data, seed=5)
    grid = _start(data, CBAM, 5)
    assert _same({k: v for k, v in prepared.model.state_dict().items()}, grid)
    assert not _same(prepare(BASE, "cbam", "neck", data, seed=6).model.state_dict(), grid)  # the seed matters
