"""``python -m attnyolo.bench neck``: what each zoo module costs inside a detector, next to its reference.

For each module, in one process: YOLOv8n (``--model``) without attention (the base), with attnyolo's module
inserted after the three neck outputs (``attnyolo.insert(..., where="neck")`` + ``attnyolo.build``: the
product path, adapter included, with ``gamma`` set to a trained-like non-zero value), and with the
reference implementation (timm / Ultralytics, same weights, see :mod:`attnyolo.bench.reference`) inserted by
hand at the same three places (:class:`After`). All three are in eval mode, fused where Ultralytics fuses
(``model.fuse()``), and run inference at batch 1 (``--imgsz``, default 320) on the CPU. The three take turns
run by run in an order cycling through all permutations (:func:`attnyolo.timing.interleaved_times`);
an overhead is the median over runs of ``t(model) / t(base) - 1`` for runs timed back to back, so load
changes on a shared machine cancel out. The load average is printed before and after.
"""

from __future__ import annotations

import copy
import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from attnyolo.bench.reference import build_reference, ours_overrides
from attnyolo.graph.attention_layers import attention_layers
from attnyolo.registry import ModuleSpec, describe, specs
from attnyolo.timing import interleaved_times

DEFAULT_MODULES = ("se", "eca", "cbam")
TRAINED_GAMMA = 0.5  # a trained identity-start gamma is non-zero: no shortcut may hide the module's cost


class After(nn.Module):
    """``attn(layer(x))`` standing in for Ultralytics layer ``layer``: a module inserted after it by hand.

    Carries the layer's ``f``, ``i`` and ``type``, which Ultralytics' forward loop and ``fuse`` read.
    """

    def __init__(self, layer: nn.Module, attn: nn.Module):
        super().__init__()
        self.layer, self.attn = layer, attn
        self.f, self.i, self.type = layer.f, layer.i, layer.type

    def forward(self, x):
        return self.attn(self.layer(x))


@dataclass
class NeckRow:
    name: str
    reference: str = ""
    base_ms: float | None = None
    ours: list[float] = field(default_factory=list)  # per-run t(ours) / t(base)
    ref: list[float] = field(default_factory=list)  # per-run t(ref) / t(base)
    error: str = ""

    @property
    def ours_overhead(self) -> float | None:
        return statistics.median(self.ours) - 1 if self.ours else None

    @property
    def ref_overhead(self) -> float | None:
        return statistics.median(self.ref) - 1 if self.ref else None


def base_model(model: str, imgsz: int) -> tuple[nn.Module, list[int], list[tuple[int, int, int]]]:
    """The base model (not fused), the indices of the layers its head reads, and their output shapes (C, H, W)."""
    from attnyolo.graph.ultralytics import build

    torch.manual_seed(0)
    net = build(model).eval()
    head = net.model[-1]
    sources = [head.f] if isinstance(head.f, int) else list(head.f)
    shapes: dict[int, tuple[int, int, int]] = {}

    def record(j: int):
        def hook(_module, _inputs, out) -> None:
            shapes[j] = tuple(out.shape[1:])

        return hook

    hooks = [net.model[j].register_forward_hook(record(j)) for j in sources]
    with torch.inference_mode():
        net(torch.zeros(1, 3, imgsz, imgsz))
    for h in hooks:
        h.remove()
    return net, sources, [shapes[j] for j in sources]


def _ours(model: str, spec: ModuleSpec, base: nn.Module, hparams: dict, gamma: float) -> nn.Module:
    """attnyolo's product path: insert after the neck outputs, build, the base's weights transferred."""
    from attnyolo.graph.api import insert
    from attnyolo.graph.ultralytics import build
    from attnyolo.weights import transfer

    cfg, index_map = insert(model, spec.name, where="neck", **hparams)
    torch.manual_seed(0)
    net = build(cfg).eval()
    transfer(net, base.state_dict(), index_map)
    for layer in attention_layers(net).values():
        if layer.gamma is not None:
            with torch.no_grad():
                layer.gamma.fill_(gamma)
    return net


def _with_reference(spec: ModuleSpec, base: nn.Module, ours: nn.Module, sources, shapes) -> tuple[nn.Module, str]:
    """The base model with the reference module (ours' weights) inserted by hand after each head input."""
    attns = [layer.attn for layer in attention_layers(ours).values()]  # before ours is fused
    if len(attns) != len(sources):
        raise RuntimeError(f"{spec.name}: expected {len(sources)} inserted layers, found {len(attns)}")
    net = copy.deepcopy(base)
    source = ""
    for j, attn, (c, h, w) in zip(sources, attns, shapes, strict=True):
        ref = build_reference(spec, copy.deepcopy(attn).eval(), c, (h, w))
        if ref is None:
            raise RuntimeError(f"{spec.name} names no reference implementation")
        net.model[j] = After(net.model[j], ref.module.eval())
        source = ref.source
    return net.eval().fuse(verbose=False), source


def compared_models(
    spec: ModuleSpec, model: str, raw: nn.Module, sources: list[int], shapes: list, gamma: float = TRAINED_GAMMA
) -> tuple[nn.Module, nn.Module, str]:
    """Ours and the reference inserted after the head inputs of ``raw`` (from :func:`base_model`), both fused,
    with the same weights everywhere; and the reference's class path."""
    ours = _ours(model, spec, raw, ours_overrides(spec, shapes[0][0]), gamma)
    ref, source = _with_reference(spec, raw, ours, sources, shapes)
    return ours.fuse(verbose=False), ref, source


def bench(
    names: Sequence[str] = DEFAULT_MODULES,
    model: str = "yolov8n.yaml",
    imgsz: int = 320,
    repeat: int = 30,
    warmup: int = 3,
    gamma: float = TRAINED_GAMMA,
    progress=None,
) -> list[NeckRow]:
    """One row per module: latency overheads of ours and of the reference against the base model."""
    chosen = [describe(n) for n in names]
    raw, sources, shapes = base_model(model, imgsz)
    base = copy.deepcopy(raw).fuse(verbose=False)
    x = torch.randn(1, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(0))
    rows = []
    for spec in chosen:
        if progress:
            progress(spec.name)
        row = NeckRow(spec.name)
        rows.append(row)
        try:
            ours, ref, row.reference = compared_models(spec, model, raw, sources, shapes, gamma)
            for who, net in (("ours", ours), ("reference", ref)):  # both must run at these sizes
                row.error = f"{who} fails at {', '.join('x'.join(map(str, s[1:])) for s in shapes)}"
                with torch.inference_mode():
                    net(x)
            row.error = ""
        except Exception as e:  # noqa: BLE001 - a module that cannot be compared is reported, not fatal
            msg = str(e).strip().splitlines()[0] if str(e).strip() else "(no message)"
            row.error = f"{row.error + ': ' if row.error else ''}{type(e).__name__}: {msg}"[:160]
            continue

        def call(net: nn.Module):
            def run() -> None:
                with torch.inference_mode():
                    net(x)

            return run

        t_base, t_ours, t_ref = interleaved_times([call(base), call(ours), call(ref)], repeat, warmup)
        row.base_ms = statistics.median(t_base) * 1e3
        row.ours = [a / b for a, b in zip(t_ours, t_base, strict=True)]
        row.ref = [a / b for a, b in zip(t_ref, t_base, strict=True)]
    return rows


def with_references() -> list[str]:
    """Zoo names whose spec names an installed reference implementation (timm / Ultralytics)."""
    from attnyolo.bench.reference import parse_reference

    return [s.name for s in specs() if parse_reference(s.reference) is not None and not s.needs_frames]


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:+.1f} %"


def render(rows: Sequence[NeckRow], load: tuple[float, float], args_text: str, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    cores = os.cpu_count() or 1
    console.print(
        f"[bold]attnyolo neck benchmark[/]  {args_text}  torch {torch.__version__}  threads "
        f"{torch.get_num_threads()}  load average {load[0]:.1f} before, {load[1]:.1f} after, on {cores} cores\n"
        "overhead: median over interleaved runs of t(model)/t(base) - 1 (inference, eval, fused, batch 1, CPU)"
    )
    table = Table()
    for col, justify in (
        ("module", "left"),
        ("reference", "left"),
        ("base ms", "right"),
        ("ours", "right"),
        ("reference", "right"),
        ("ours - ref", "right"),
    ):
        table.add_column(col, justify=justify)
    for r in rows:
        if r.error:
            table.add_row(r.name, r.error, "", "", "", "")
            continue
        diff = None if r.ours_overhead is None or r.ref_overhead is None else r.ours_overhead - r.ref_overhead
        table.add_row(
            r.name,
            r.reference.rsplit(".", 1)[-1],
            f"{r.base_ms:.1f}",
            _pct(r.ours_overhead),
            _pct(r.ref_overhead),
            "" if diff is None else f"{100 * diff:+.1f} pt",
        )
    console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from rich.console import Console

    parser = argparse.ArgumentParser(prog="python -m attnyolo.bench neck", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default=",".join(DEFAULT_MODULES), help="comma-separated module names, or 'all' (every module "
        f"with a reference implementation); default {','.join(DEFAULT_MODULES)}"
    )  # fmt: skip
    parser.add_argument("--model", default="yolov8n.yaml", help="base model YAML (default yolov8n.yaml)")
    parser.add_argument("--imgsz", type=int, default=320, help="square input size (default 320)")
    parser.add_argument("--repeat", type=int, default=30, help="timed runs per model (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    parser.add_argument("--gamma", type=float, default=TRAINED_GAMMA, help="identity-start gamma of ours")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = parser.parse_args(argv)
    for name in ("imgsz", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer, got {getattr(args, name)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    names = with_references() if args.only.strip() == "all" else [n.strip() for n in args.only.split(",") if n.strip()]
    console = Console(width=None if sys.stdout.isatty() else 200)
    before = os.getloadavg()[0]
    try:
        rows = bench(names, args.model, args.imgsz, args.repeat, args.warmup, args.gamma, progress=console.log)
    except (ValueError, KeyError) as e:  # unknown module names, a model that does not build
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = f"{args.model} {args.imgsz}x{args.imgsz} gamma {args.gamma:g} repeat {args.repeat}"
    render(rows, (before, os.getloadavg()[0]), text, console)
    return 0
