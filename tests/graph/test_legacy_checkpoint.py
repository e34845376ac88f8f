"""A checkpoint pickled by older code (the adapter then lived in ``attnyolo.graph.ultralytics``) still loads and
computes what it computed when it was written: the file is ``fixtures/adapter_checkpoint_e2efe6e.pt``, written by
``fixtures/write_adapter_checkpoint.py`` at main e2efe6e, with its input and output stored next to the model."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from graph_helpers import FIXTURES

import attnyolo
from attnyolo.checkpoints.pickle_scan import scan_pickle, zip_data_pkl

LEGACY = FIXTURES / "adapter_checkpoint_e2efe6e.pt"
OLD_NAMES = {
    "attnyolo.graph.ultralytics.ay_cbam",
    "attnyolo.graph.ultralytics.ay_gca",
    "attnyolo.graph.ultralytics.ay_se",
    "attnyolo.graph.inside_modules.InsideBottleneck",
}


def check_old_checkpoint(ckpt: dict) -> None:
    """Asserts the old adapters came back with their settings and the model computes the stored output."""
    model, fixture = ckpt["model"], ckpt["attnyolo"]["fixture"]
    names = {type(m).__name__: m for m in model.modules()}
    assert {"ay_cbam", "ay_gca", "ay_se", "InsideBottleneck"} <= set(names)
    assert names["ay_cbam"].start == "gamma" and names["ay_cbam"].gamma.item() == 0.5
    assert names["ay_gca"].start == "module" and names["ay_gca"].gamma is None
    assert names["ay_se"].start == "off" and names["ay_se"].gamma is None
    with torch.no_grad():
        out = model.eval()(fixture["input"])[0]
    # Written on another machine's CPU kernels: equal up to float32 rounding; a wrong or missing attention (every
    # gamma is 0.5 and every tensor perturbed) moves the output by far more than this.
    torch.testing.assert_close(out, fixture["output"], rtol=1e-5, atol=1e-5)


def test_the_fixture_names_the_old_adapter_paths():
    names, _ = scan_pickle(zip_data_pkl(LEGACY))
    assert names >= OLD_NAMES  # the file really is an old one: what this module tests


def test_safe_loader_loads_the_old_checkpoint_and_it_computes_the_stored_output():
    check_old_checkpoint(attnyolo.load_checkpoint(LEGACY))


def test_plain_torch_load_loads_the_old_checkpoint_and_it_computes_the_stored_output():
    check_old_checkpoint(torch.load(LEGACY, map_location="cpu", weights_only=False))


def test_old_checkpoint_loads_the_same_as_the_model_rebuilt_from_its_yaml():
    # bit-exact on this machine: the unpickled modules run the same code as a model built today from the same YAML
    model = attnyolo.load_checkpoint(LEGACY)["model"].eval()
    rebuilt = attnyolo.build(model.yaml, nc=3).eval()
    rebuilt.load_state_dict(model.state_dict())
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(model(x)[0], rebuilt(x)[0])
    assert [type(m).__name__ for m in model.modules()] == [type(m).__name__ for m in rebuilt.modules()]


@pytest.mark.parametrize("weights_only", [False, True])
def test_old_checkpoint_loads_in_a_fresh_process(weights_only):
    # nothing registered beforehand: plain unpickling imports attnyolo, which registers itself; with weights_only=True
    # (Ultralytics' ULTRALYTICS_SAFE_LOAD path) torch and Ultralytics classes are allowed here by hand, and every
    # attnyolo class, old paths included, must already be a safe global after ``import attnyolo``
    script = f"""
        import importlib
        import torch
        {"import attnyolo" if weights_only else ""}
        if {weights_only}:
            needed = torch.serialization.get_unsafe_globals_in_checkpoint({str(LEGACY)!r})
            assert not [n for n in needed if n.startswith("attnyolo.")], needed
            torch.serialization.add_safe_globals(
                [(getattr(importlib.import_module(n.rpartition(".")[0]), n.rpartition(".")[2]), n) for n in needed]
            )
        ckpt = torch.load({str(LEGACY)!r}, map_location="cpu", weights_only={weights_only})
        fixture = ckpt["attnyolo"]["fixture"]
        with torch.no_grad():
            out = ckpt["model"].eval()(fixture["input"])[0]
        torch.testing.assert_close(out, fixture["output"], rtol=1e-5, atol=1e-5)
        print("ok", sorted({{type(m).__module__ for m in ckpt["model"].modules() if "attnyolo" in type(m).__module__}}))
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok")


def test_a_checkpoint_written_now_names_the_adapter_module_and_loads_safely(tmp_path):
    model = attnyolo.load_checkpoint(LEGACY)["model"]
    path = tmp_path / "now.pt"
    torch.save({"model": model}, path)
    names, _ = scan_pickle(zip_data_pkl(path))
    ours = {n for n in names if n.startswith("attnyolo.graph.")}
    assert ours == {
        "attnyolo.graph.adapter.ay_cbam",
        "attnyolo.graph.adapter.ay_gca",
        "attnyolo.graph.adapter.ay_se",
        "attnyolo.graph.inside_modules.InsideBottleneck",
    }
    fixture = attnyolo.load_checkpoint(LEGACY)["attnyolo"]["fixture"]
    with torch.no_grad():
        out = attnyolo.load_checkpoint(path)["model"].eval()(fixture["input"])[0]
        assert torch.equal(out, model.eval()(fixture["input"])[0])
