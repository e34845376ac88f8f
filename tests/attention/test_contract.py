"""The module contract, checked for every entry of the registry (modules added later are tested for free).

Each test is parametrised over ``attnyolo.registry.specs()`` collected at import time. Sizes are tiny on
purpose: the suite runs every module through every check in a couple of minutes on two CPU cores.
"""

from __future__ import annotations

import datetime
import functools
import inspect
import io
import multiprocessing as mp
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from attnyolo.attention.gate_kinds import GATE_KINDS, check_gate_kind, gate_modules, layout_problem
from attnyolo.registry import CATEGORIES, ModuleSpec, UnknownModuleError, describe, specs

SPECS = specs()
TEMPORAL = [s for s in SPECS if s.needs_frames]
FRAMES = 2
CANDIDATE_CHANNELS = (16, 32, 64, 48, 96, 128)


def ids(spec: ModuleSpec) -> str:
    return spec.name


# ---- helpers -------------------------------------------------------------------------------------------


def extra_kwargs(spec: ModuleSpec) -> dict:
    return {"frames": FRAMES} if spec.needs_frames else {}


def batch(spec: ModuleSpec, samples: int = 2) -> int:
    """``samples`` images, or ``samples`` clips of FRAMES frames for temporal modules (2 -> batch 4)."""
    return samples * FRAMES if spec.needs_frames else samples


def build(spec: ModuleSpec, channels: int | None = None, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return spec.create(channels or usable_channels(spec.name), **extra_kwargs(spec))


@functools.cache
def usable_channels(name: str) -> int:
    """The first small channel count the module accepts (some need e.g. multiples of 32)."""
    spec = describe(name)
    errors = []
    for c in CANDIDATE_CHANNELS:
        try:
            spec.create(c, **extra_kwargs(spec))
            return c
        except ValueError as e:
            errors.append(f"{c}: {e}")
    raise AssertionError(f"{name} accepts none of the channel counts {CANDIDATE_CHANNELS}: {errors}")


def make_input(spec: ModuleSpec, h: int, w: int, samples: int = 2, channels: int | None = None, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch(spec, samples), channels or usable_channels(spec.name), h, w, generator=g)


def first_tensor(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise AssertionError(f"expected a tensor output, got {type(out).__name__}")


def unsupported_on_cpu(err: RuntimeError) -> bool:
    """PyTorch's way of saying a kernel has no CPU implementation for a dtype."""
    msg = str(err)
    return "not implemented for" in msg or ("Unsupported" in msg and "CPU" in msg)


# ---- the spec itself -----------------------------------------------------------------------------------


def test_registry_is_not_empty():
    assert len(SPECS) > 0


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_spec_fields_are_valid(spec: ModuleSpec):
    assert spec.name == spec.name.lower() and spec.name.strip() == spec.name and spec.name
    assert spec.category in CATEGORIES
    assert spec.paper.strip(), "paper title is empty"
    assert 1990 <= spec.year <= datetime.date.today().year
    assert not spec.url or spec.url.startswith(("http://", "https://"))
    assert isinstance(spec.batch1_train, bool) and isinstance(spec.onnx, bool)
    assert spec.onnx or spec.onnx_note.strip(), "onnx=False needs onnx_note saying why"
    assert isinstance(spec.onnx_dynamic, bool)
    assert spec.onnx_dynamic or spec.onnx_note.strip(), "onnx_dynamic=False needs onnx_note saying why"
    assert spec.batch1_train or spec.notes.strip(), "batch1_train=False needs notes saying why"
    assert spec.summary, "the class needs a docstring (its first line is the summary)"
    assert (inspect.getmodule(spec.cls).__doc__ or "").strip(), "the module file needs a docstring naming the paper"
    params = list(inspect.signature(spec.cls.__init__).parameters)
    assert params[1] == "channels", "the first constructor argument must be `channels`"
    assert set(spec.preset) <= set(spec.defaults), "preset names a hyper-parameter the class does not take"
    assert set(spec.channel_params) <= set(spec.defaults), "channel_params names a hyper-parameter the class lacks"
    assert "frames" in spec.defaults or not spec.needs_frames


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_unknown_name_error_lists_the_close_name(spec: ModuleSpec):
    with pytest.raises(UnknownModuleError) as err:
        describe(spec.name + "x")
    assert spec.name in str(err.value)
    assert isinstance(err.value, ValueError) and isinstance(err.value, KeyError)


def test_unknown_hyperparameter_is_rejected():
    spec = SPECS[0]
    with pytest.raises(ValueError, match="not_a_hyperparameter"):
        spec.create(usable_channels(spec.name), not_a_hyperparameter=1, **extra_kwargs(spec))


# ---- forward contract ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=ids)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_shape_is_preserved_on_non_square_input(spec: ModuleSpec, mode: str):
    m = build(spec).train(mode == "train")
    x = make_input(spec, 7, 5)
    y = m(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("spec", SPECS, ids=ids)
@pytest.mark.parametrize("hw", [(1, 5), (5, 1), (1, 1)], ids=["H1", "W1", "H1W1"])
def test_shape_is_preserved_when_height_or_width_is_one(spec: ModuleSpec, hw: tuple[int, int]):
    m = build(spec)
    x = make_input(spec, *hw)
    for mode in (True, False):
        y = m.train(mode)(x)
        assert y.shape == x.shape, f"train={mode}"
        assert torch.isfinite(y).all(), f"train={mode}"


@pytest.mark.parametrize("spec", SPECS, ids=ids)
@pytest.mark.parametrize("channels", [3, 16, 24, 80, 1280])
def test_channel_count_works_or_is_refused_as_a_documented_constraint(spec: ModuleSpec, channels: int):
    try:
        m = build(spec, channels)
    except ValueError as e:
        assert "channels" in str(e), f"a refusal must name `channels`: {e}"
        assert spec.constraints.strip(), f"channels={channels} refused but spec.constraints is empty: {e}"
        return
    x = make_input(spec, 3, 2, channels=channels)
    with torch.no_grad():
        y = m.eval()(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_batch_one_trains_or_spec_says_it_cannot(spec: ModuleSpec):
    m = build(spec).train()
    x = make_input(spec, 6, 4, samples=1).requires_grad_()

    def step():
        y = m(x)
        y.square().mean().backward()
        return y

    if spec.batch1_train:
        y = step()
        assert y.shape == x.shape
        assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    else:
        with pytest.raises((ValueError, RuntimeError)):
            step()


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_input_tensor_is_not_modified_in_place(spec: ModuleSpec):
    m = build(spec).train()
    x = make_input(spec, 6, 5)
    before = x.clone()
    m(x)
    assert torch.equal(x, before)


@pytest.mark.parametrize("spec", SPECS, ids=ids)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_half_precision_matches_float32(spec: ModuleSpec, dtype: torch.dtype):
    m = build(spec).eval()
    x = make_input(spec, 6, 5)
    with torch.no_grad():
        ref = m(x)
        try:
            y = m.to(dtype)(x.to(dtype))
        except RuntimeError as e:
            if unsupported_on_cpu(e):
                pytest.skip(f"{dtype} unsupported on CPU for this op: {str(e).splitlines()[0]}")
            raise
    assert y.dtype == dtype and y.shape == x.shape
    assert torch.isfinite(y).all()
    tol = 2e-2 if dtype == torch.float16 else 8e-2
    err = (y.float() - ref).abs().max().item()
    assert err <= tol * (ref.abs().max().item() + 1.0), f"max abs error {err:.3g}"


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_channels_last_input_gives_the_same_values(spec: ModuleSpec):
    m = build(spec).eval()
    x = make_input(spec, 6, 5)
    with torch.no_grad():
        ref = m(x)
        y = m(x.contiguous(memory_format=torch.channels_last))
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_gradients_reach_the_input_and_every_parameter(spec: ModuleSpec):
    m = build(spec).train()
    # Zero-initialised parameters (identity starts) would hide a broken graph behind zero gradients.
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    x = make_input(spec, 6, 5).requires_grad_()
    y = m(x)
    y.mul(torch.randn(y.shape, generator=g)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0, "no gradient reaches the input"
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert not missing, f"parameters outside the graph: {missing}"
    bad = [n for n, p in m.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad}"
    params = list(m.parameters())
    assert not params or any(p.grad.abs().sum() > 0 for p in params), "every parameter gradient is zero"


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_gate_submodule_hook_captures_the_weights(spec: ModuleSpec):
    m = build(spec).eval()
    assert isinstance(getattr(m, "gate", None), nn.Module), "the module needs a submodule named `gate`"
    seen = []
    handle = m.gate.register_forward_hook(lambda _mod, _inp, out: seen.append(first_tensor(out).detach()))
    try:
        with torch.no_grad():
            m(make_input(spec, 6, 5))
    finally:
        handle.remove()
    assert seen, "the gate's forward hook did not fire"
    assert all(torch.isfinite(w).all() for w in seen)


def gate_layout_problems(m: nn.Module, gates: dict, x: torch.Tensor, frames: int | None) -> tuple[list[str], set]:
    """Run ``m(x)``; what each gate's output breaks of its declared kind's layout, and the gates that fired."""
    problems: list[str] = []
    fired: set[str] = set()

    def hook(gate, _inp, out, path: str) -> None:
        fired.add(path)
        problem = layout_problem(gate.kind, gate.layout, tuple(first_tensor(out).shape), tuple(x.shape), frames)
        if problem:
            problems.append(f"{path}: {problem}")

    handles = [g.register_forward_hook(functools.partial(hook, path=p)) for p, g in gates.items()]
    try:
        with torch.no_grad():
            m(x)
    finally:
        for handle in handles:
            handle.remove()
    return problems, fired


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_every_gate_declares_a_kind_that_matches_its_weights(spec: ModuleSpec):
    """Each gate (``gate``, ``*_gate``) declares a valid kind, and on a real forward the weights it returns have
    that kind's layout, at two channel counts and at square and non-square sizes (a window size or a group count
    that only matches one size would fail here)."""
    frames = FRAMES if spec.needs_frames else None
    c0 = usable_channels(spec.name)
    checked = 0
    for channels in (c0, 2 * c0):
        try:
            m = build(spec, channels).eval()
        except ValueError:  # a documented channel constraint at 2 * c0
            continue
        gates = gate_modules(m)
        main = next(p for p, g in gates.items() if g is m.gate)  # "gate", or the path it is shared from
        for path, gate in gates.items():
            assert gate.kind in GATE_KINDS, f"{path} declares kind {gate.kind!r}"
            check_gate_kind(gate.kind, gate.layout)
        for h, w in ((6, 5), (12, 16), (1, 7), (8, 8)):
            problems, fired = gate_layout_problems(m, gates, make_input(spec, h, w, channels=channels), frames)
            assert not problems, problems
            assert main in fired
            checked += len(fired)
    assert checked


# ---- ONNX ----------------------------------------------------------------------------------------------


EXPORT_HW = (20, 20)  # P5 of a 640 input
DYNAMIC_HW = (24, 32)  # another size, non-square, where a graph frozen at the traced size fails
DYNAMIC_AXES = {name: {0: "batch", 2: "height", 3: "width"} for name in ("x", "y")}


def onnx_roundtrip(name: str, dynamic: bool = True) -> None:
    """Export ``name`` (eval, opset 17, legacy exporter) at 20x20, run it in onnxruntime, compare with PyTorch.

    With ``dynamic`` the batch, height and width axes are dynamic (Ultralytics' ``export(dynamic=True)``) and
    the graph must also give PyTorch's outputs at 24x32 with one sample (two clips for temporal modules) fewer.
    """
    import onnxruntime as ort

    spec = describe(name)
    m = build(spec).eval()
    x = make_input(spec, *EXPORT_HW)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            m,
            (x,),
            buf,
            opset_version=17,
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes=DYNAMIC_AXES if dynamic else None,
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"])
    runs = [x]
    if dynamic:
        runs.append(make_input(spec, *DYNAMIC_HW, samples=1, seed=3))
    for inp in runs:
        (got,) = session.run(None, {"x": inp.numpy()})
        with torch.no_grad():
            want = m(inp).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3, err_msg=f"input {tuple(inp.shape)}")


def _onnx_child(name: str, dynamic: bool, conn) -> None:
    torch.set_num_threads(1)  # no OpenMP team in a forked child
    try:
        onnx_roundtrip(name, dynamic)
        conn.send(None)
    except BaseException as e:  # report every failure to the parent, whatever its type
        conn.send(f"{type(e).__name__}: {e}")
    conn.close()


def onnx_failure(name: str, dynamic: bool = True) -> str | None:
    """``None`` when the round trip (with dynamic axes unless ``dynamic=False``) matches, else why not.

    The exporter can die with a signal (e.g. SIGFPE) on some graphs, which would take the whole test
    session with it, so the round trip runs in a forked child where fork is available.
    """
    if "fork" not in mp.get_all_start_methods():
        try:
            onnx_roundtrip(name, dynamic)
            return None
        except Exception as e:
            return f"{type(e).__name__}: {e}"
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_onnx_child, args=(name, dynamic, child))
    proc.start()
    child.close()
    try:
        result = parent.recv() if parent.poll(300) else "no answer from the export process within 300 s"
    except EOFError:  # the child died before answering
        result = "died"
    proc.join(10)
    if proc.is_alive():
        proc.kill()
        proc.join()
    if result == "died" or (result is None and proc.exitcode != 0):
        result = f"the export process died (exit code {proc.exitcode}; negative = killed by that signal)"
    return result


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_onnx_export_matches_pytorch_or_spec_says_it_cannot(spec: ModuleSpec):
    """With dynamic axes, exported at 20x20 and run at 20x20 and 24x32; or the spec says what does not work."""
    failure = onnx_failure(spec.name, dynamic=True)
    if spec.onnx and spec.onnx_dynamic:
        assert failure is None, failure
        return
    assert failure is not None, "spec says the dynamic-axes export fails, but export, onnxruntime and outputs all work"
    if spec.onnx:  # static shapes only: the fixed-size export must work
        static_failure = onnx_failure(spec.name, dynamic=False)
        assert static_failure is None, static_failure


# ---- temporal modules ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", TEMPORAL, ids=ids)
def test_temporal_module_needs_frames_and_a_batch_of_whole_clips(spec: ModuleSpec):
    c = usable_channels(spec.name)
    with pytest.raises(ValueError, match="frames"):
        spec.create(c)
    m = build(spec)
    with pytest.raises(ValueError):
        m(torch.randn(FRAMES + 1, c, 4, 4))
