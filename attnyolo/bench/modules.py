"""``python -m attnyolo.bench modules``: every zoo module's training cost, side by side with its reference.

For each module and input size, in one process: forward+backward time (median of ``repeat`` runs after
``warmup``) and peak memory of ours, of the reference implementation (timm / Ultralytics, built with
the same configuration and weights, see :mod:`attnyolo.bench.reference`) and of the memory-bound floor
(``x * s`` with a per-channel scale: one read and one write of the map). The modules take turns run by run,
in an order cycling through all permutations, and a time ratio is the median of the run-by-run ratios, so
load changes on a shared machine cancel out. Memory is the peak of the tensors a forward+backward allocates
beyond the input and the parameters (output, activations saved for backward, temporaries, gradients):
CUDA's allocator peak, or on CPU the same bytes counted op by op (kernel scratch buffers are not seen there).
Self-attention modules also report their memory at 1x256x80x80, through the fused kernel and with the
attention weights observed, or the refusal their ``memory_limit_mb`` gives.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from attnyolo.bench.reference import build_reference, ours_overrides
from attnyolo.registry import ModuleSpec, specs
from attnyolo.timing import interleaved_times

Shape = tuple[int, int, int, int]
FULL_SIZES: tuple[Shape, ...] = ((1, 256, 40, 40), (8, 128, 80, 80))
QUICK_SIZES: tuple[Shape, ...] = ((1, 64, 16, 16), (2, 32, 24, 24))
FULL_ATTENTION_PROBE: Shape = (1, 256, 80, 80)
QUICK_ATTENTION_PROBE: Shape = (1, 64, 24, 24)


class Floor(nn.Module):
    """The memory-bound floor: ``x * s``, a per-channel scale (reads the map once, writes it once)."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


@dataclass
class Measure:
    seconds: float | None = None
    mib: float | None = None
    error: str = ""
    detail: str = ""  # the error's full first line
    samples: list[float] = field(default_factory=list, repr=False)  # seconds of each timed run, in run order


@dataclass
class Row:
    name: str
    shape: Shape
    ours: Measure
    floor: Measure
    reference: str = ""  # where the reference comes from, "" when the spec names no library
    ref: Measure = field(default_factory=Measure)
    weights: str = ""
    max_abs_diff: float | None = None
    ref_scale: float = 0.0  # largest |output| of the reference, for a relative tolerance

    @property
    def match(self) -> str:
        if not self.reference or self.ref.error or self.max_abs_diff is None:
            return ""
        if self.weights.startswith("own init"):
            return "-"
        return "yes" if self.max_abs_diff <= 1e-4 * (1 + self.ref_scale) else f"NO ({self.max_abs_diff:.1e})"

    def ratio(self, what: str, against: str) -> float | None:
        other: Measure = getattr(self, against)
        if what == "seconds" and self.ours.samples and len(self.ours.samples) == len(other.samples):
            # run i of both was timed back to back: its ratio is immune to slower load phases
            return statistics.median(a / b for a, b in zip(self.ours.samples, other.samples, strict=True))
        a, b = getattr(self.ours, what), getattr(other, what)
        return a / b if a and b else None


@dataclass
class AttentionProbe:
    name: str
    shape: Shape
    fused: str
    observed: str


def _first(out) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(module: nn.Module, x: torch.Tensor, grad: torch.Tensor | None = None) -> torch.Tensor:
    y = _first(module(x))
    y.backward(grad if grad is not None else torch.ones_like(y))
    return y


def time_runs(modules: Sequence[nn.Module], x: torch.Tensor, repeat: int = 10, warmup: int = 2) -> list[list[float]]:
    """Seconds of each of ``repeat`` forward+backward runs (train mode, gradient w.r.t. ``x`` too) per module,
    interleaved (see :func:`interleaved_times`)."""
    x = x.detach().requires_grad_()
    grad = torch.randn_like(x)

    def step(module: nn.Module) -> Callable[[], None]:
        def run() -> None:
            module.zero_grad(set_to_none=True)
            x.grad = None
            _sync(x.device)
            _step(module, x, grad)
            _sync(x.device)

        return run

    return interleaved_times([step(m) for m in modules], repeat, warmup)


def time_forward_backward(
    modules: Sequence[nn.Module], x: torch.Tensor, repeat: int = 10, warmup: int = 2
) -> list[float]:
    """Median seconds of one forward+backward of each module (see :func:`time_runs`)."""
    return [statistics.median(t) for t in time_runs(modules, x, repeat, warmup)]


class _PeakTensorBytes(TorchDispatchMode):
    """Counts the storages that ops create while active, each until it is freed, and keeps the peak.

    Storages in ``existing`` (the input, parameters, buffers) are not counted when an op returns a view of them.
    """

    def __init__(self, existing: set[int]):
        super().__init__()
        self.existing = existing
        self.live: dict[int, int] = {}
        self.current = self.peak = 0

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if not key or key in self.existing or key in self.live:
                continue
            self.live[key] = storage.nbytes()
            self.current += storage.nbytes()
            self.peak = max(self.peak, self.current)
            weakref.finalize(storage, self._free, key)  # fires when the storage itself is freed
        return out


def _existing_storages(module: nn.Module, x: torch.Tensor) -> set[int]:
    tensors = [x, *module.parameters(), *module.buffers()]
    for sub in module.modules():  # tensors kept as plain attributes (cached indices, tables)
        tensors += [v for v in vars(sub).values() if isinstance(v, torch.Tensor)]
    return {t.untyped_storage().data_ptr() for t in tensors}


def activation_mib(module: nn.Module, x: torch.Tensor) -> float:
    """Peak MiB of the tensors one forward+backward allocates beyond the input, parameters and buffers.

    CUDA: the allocator's peak. CPU has no allocator statistics, so every storage an op returns is
    counted until it is freed: the output, what autograd saves, temporaries, the gradients.
    """
    x = x.detach().requires_grad_()
    if x.device.type == "cuda":
        gc.collect()
        torch.cuda.synchronize(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        base = torch.cuda.memory_allocated(x.device)
        _step(module, x)
        torch.cuda.synchronize(x.device)
        return (torch.cuda.max_memory_allocated(x.device) - base) / 2**20
    with _PeakTensorBytes(_existing_storages(module, x)) as tracker:
        _step(module, x)
    return tracker.peak / 2**20


def _try_step(module: nn.Module, x: torch.Tensor) -> Measure:
    """One training step to see whether the module runs on ``x``, then its activation memory."""
    try:
        module.train()
        return Measure(mib=activation_mib(module, x))
    except (ValueError, RuntimeError, AssertionError) as e:
        return _failed(e)


def _failed(e: BaseException) -> Measure:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else "(no message) at this input"
    return Measure(error=_short(e), detail=f"{type(e).__name__}: {msg}")


def _short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if "memory_limit_mb" in msg:
        return "refused: memory_limit_mb"
    text = f"{type(e).__name__}: {msg}" if msg else f"{type(e).__name__} at this input"
    return text if len(text) <= 48 else text[:47] + "…"


def _create(spec: ModuleSpec, channels: int, batch: int, **overrides) -> nn.Module:
    kwargs = {"frames": 2 if batch % 2 == 0 else 1} if spec.needs_frames else {}
    return spec.create(channels, **kwargs, **overrides)


def bench_module(spec: ModuleSpec, shape: Shape, device: torch.device, repeat: int = 10, warmup: int = 2) -> Row:
    """One row: ours, the reference (if any) and the floor on a ``shape`` input."""
    b, c, h, w = shape
    x = torch.randn(*shape, device=device)
    floor = Floor(c).to(device)
    row = Row(spec.name, shape, Measure(), _try_step(floor, x))
    torch.manual_seed(0)
    overrides = ours_overrides(spec, c)  # the configuration in which ours and the reference compute the same
    try:
        ours = _create(spec, c, b, **overrides).to(device)
    except ValueError as e:
        row.ours = _failed(e)
        row.floor.samples = time_runs([floor], x, repeat, warmup)[0]
        row.floor.seconds = statistics.median(row.floor.samples)
        return row
    ref = None
    try:
        ref = build_reference(spec, ours.eval(), c, (h, w))
    except Exception as e:  # noqa: BLE001 - a reference that cannot be built at this size is reported, not fatal
        row.reference, row.ref = spec.reference.split()[0], _failed(e)
    if ref is not None:
        row.reference, row.weights = ref.source, ref.weights
        if overrides:
            row.weights += "; ours with " + ", ".join(f"{k}={v!r}" for k, v in overrides.items())
        ref.module.to(device)
        try:  # before any training step, which moves BatchNorm statistics by each module's own momentum
            with torch.no_grad():
                want = _first(ref.module.eval()(x))
                row.max_abs_diff = (_first(ours.eval()(x)) - want).abs().max().item()
                row.ref_scale = want.abs().max().item()
        except Exception:  # noqa: BLE001, S110 - the training step below reports the failure
            pass
        row.ref = _try_step(ref.module, x)
    row.ours = _try_step(ours, x)
    timed = [(m, r) for m, r in ((floor, row.floor), (ours, row.ours)) if not r.error]
    if ref is not None and not row.ref.error:
        timed.append((ref.module, row.ref))
    for (_, measure), samples in zip(timed, time_runs([m for m, _ in timed], x, repeat, warmup), strict=True):
        measure.samples, measure.seconds = samples, statistics.median(samples)
    return row


def probe_attention(spec: ModuleSpec, shape: Shape, device: torch.device) -> AttentionProbe:
    """Memory of a self-attention module at ``shape``: fused (weights unobserved) and with them captured."""
    x = torch.randn(*shape, device=device)
    results = []
    for observed in (False, True):
        try:
            m = _create(spec, shape[1], shape[0]).to(device).train()
            if observed:
                if not hasattr(m, "capture_attention"):
                    results.append("same (no fused path)")
                    continue
                m.capture_attention = True
            results.append(f"{activation_mib(m, x):,.0f} MiB")
        except (ValueError, RuntimeError) as e:
            results.append(_short(e))
    return AttentionProbe(spec.name, shape, *results)


def run(
    names: Sequence[str] | None = None,
    sizes: Sequence[Shape] = FULL_SIZES,
    probe: Shape | None = FULL_ATTENTION_PROBE,
    repeat: int = 10,
    warmup: int = 2,
    device: str | torch.device | None = None,
    progress=None,
) -> tuple[list[Row], list[AttentionProbe]]:
    """Benchmark ``names`` (default: the whole zoo) at every size; probe self-attention memory at ``probe``."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    chosen = [s for s in specs() if names is None or s.name in set(names)]
    if names is not None:
        unknown = sorted(set(names) - {s.name for s in chosen})
        if unknown:
            raise ValueError(f"unknown module(s) for --only: {', '.join(unknown)}")
    rows, probes = [], []
    for spec in chosen:
        for shape in sizes:
            if progress:
                progress(f"{spec.name} {'x'.join(map(str, shape))}")
            rows.append(bench_module(spec, shape, dev, repeat, warmup))
        if probe is not None and spec.category == "self_attention":
            if progress:
                progress(f"{spec.name} attention memory at {'x'.join(map(str, probe))}")
            probes.append(probe_attention(spec, probe, dev))
    return rows, probes


# ---- output ---------------------------------------------------------------------------------------------------


def _fmt_ms(m: Measure) -> str:
    return m.error or (f"{m.seconds * 1e3:,.2f}" if m.seconds is not None else "")


def _fmt_mib(m: Measure) -> str:
    return "" if m.error or m.mib is None else f"{m.mib:,.1f}"


def _fmt_ratio(r: float | None) -> str:
    return "" if r is None else f"{r:.2f}"


def summary(rows: Sequence[Row]) -> dict[str, tuple[float, float, str] | None]:
    """Median and worst (largest) ratio, with the worst row, for time and memory vs reference and time vs floor."""
    out: dict[str, tuple[float, float, str] | None] = {}
    for key, what, against in (
        ("time ours/ref", "seconds", "ref"),
        ("memory ours/ref", "mib", "ref"),
        ("time ours/floor", "seconds", "floor"),
    ):
        pairs = [(r.ratio(what, against), r) for r in rows]
        pairs = [(v, r) for v, r in pairs if v is not None]
        if not pairs:
            out[key] = None
            continue
        worst, row = max(pairs, key=lambda p: p[0])
        out[key] = (statistics.median(v for v, _ in pairs), worst, f"{row.name} {'x'.join(map(str, row.shape))}")
    return out


def _notes(rows: Sequence[Row]) -> list[str]:
    """How each reference got its weights (when not under the same keys) and the full text of each failure."""
    out = []
    for r in rows:
        if r.weights and r.weights != "same keys":
            out.append(f"{r.name}: reference weights {r.weights}")
        for who, m in (("ours", r.ours), ("reference", r.ref)):
            if m.detail:
                out.append(f"{r.name} {'x'.join(map(str, r.shape))}: {who} failed: {m.detail}")
    return out


def render(rows: Sequence[Row], probes: Sequence[AttentionProbe], device: str, console=None) -> None:
    """Print the tables with rich."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    memory = "peak allocated (CUDA)" if device.startswith("cuda") else "peak of tensors allocated (CPU)"
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    console.print(
        f"[bold]attnyolo module benchmark[/]  torch {torch.__version__}  device {device}  "
        f"torch threads {torch.get_num_threads()}  load average {load:.1f} on {cores} cores\n"
        f"time: median forward+backward (train mode); ratios: median of run-by-run ratios  memory: {memory}"
    )
    if device == "cpu" and load > cores:
        console.print(
            f"[yellow]load average {load:.1f} on {cores} cores: other processes share the CPU, times are noisy"
            + (
                " (fewer --threads suffer less: a parallel region waits for its slowest thread)"
                if torch.get_num_threads() > 1
                else ""
            )
        )
    for shape in dict.fromkeys(r.shape for r in rows):
        table = Table(title=f"input {'x'.join(map(str, shape))}")
        table.add_column("module")
        table.add_column("reference")
        table.add_column("same output")
        for col in ("ours ms", "ref ms", "ours/ref", "ours MiB", "ref MiB", "MiB ours/ref", "floor ms", "ours/floor"):
            table.add_column(col, justify="right")
        for r in (r for r in rows if r.shape == shape):
            table.add_row(
                r.name,
                r.reference.rsplit(".", 1)[-1] if r.reference else "",
                r.match,
                _fmt_ms(r.ours),
                _fmt_ms(r.ref) if r.reference else "",
                _fmt_ratio(r.ratio("seconds", "ref")),
                _fmt_mib(r.ours),
                _fmt_mib(r.ref),
                _fmt_ratio(r.ratio("mib", "ref")),
                _fmt_ms(r.floor),
                _fmt_ratio(r.ratio("seconds", "floor")),
            )
        console.print(table)
    for key, value in summary(rows).items():
        if value is None:
            console.print(f"{key}: no pairs")
        else:
            console.print(f"{key}: median {value[0]:.2f}, worst {value[1]:.2f} ({value[2]})")
    notes = dict.fromkeys(_notes(rows))
    if notes:
        console.print("[bold]notes[/]")
        for note in notes:
            console.print(f"  {note}", highlight=False)
    if probes:
        table = Table(title="self-attention memory, forward+backward")
        for col in ("module", "input", "fused (weights unobserved)", "weights observed (hook on gate)"):
            table.add_column(col)
        for p in probes:
            table.add_row(p.name, "x".join(map(str, p.shape)), p.fused, p.observed)
        console.print(table)


def _shape(text: str) -> Shape:
    parts = text.lower().split("x")
    if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"--size must look like 1x256x40x40 (BxCxHxW), got {text!r}")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from rich.console import Console

    parser = argparse.ArgumentParser(prog="python -m attnyolo.bench modules", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs and 3 runs (a smoke test)")
    parser.add_argument("--only", default="", help="comma-separated module names (default: the whole zoo)")
    parser.add_argument("--repeat", type=int, default=None, help="timed runs per measurement (default 10, quick 3)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 2, quick 1)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--no-probe", action="store_true", help="skip the self-attention memory probe")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--size", action="append", type=_shape, default=None, help="input BxCxHxW (repeatable)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n.strip().lower() for n in args.only.split(",") if n.strip()] or None
    console = Console(width=None if sys.stdout.isatty() else 200)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rows, probes = run(
        names,
        sizes=args.size or (QUICK_SIZES if args.quick else FULL_SIZES),
        probe=None if args.no_probe else (QUICK_ATTENTION_PROBE if args.quick else FULL_ATTENTION_PROBE),
        repeat=args.repeat or (3 if args.quick else 10),
        warmup=args.warmup if args.warmup is not None else (1 if args.quick else 2),
        device=device,
        progress=lambda s: console.log(s) if not args.quick else None,
    )
    render(rows, probes, device, console)
    return 0
