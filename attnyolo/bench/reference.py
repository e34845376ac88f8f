"""Build a zoo module's reference implementation (timm / Ultralytics) from its spec, with the same weights.

A spec's ``reference`` is free text that starts ``timm:<name>`` or ``ultralytics:<name>`` when an installed
library implements the module, e.g. ``timm:cbam``, ``timm:EcaModule(use_mlp=True)``,
``timm:NonLocalAttn (timm.layers.non_local_attn) with rd_ratio=1/2, use_scale=False``,
``ultralytics:ultralytics.nn.modules.conv.CBAM``. :func:`build_reference` resolves the class, passes the
keyword arguments written in the text plus the zoo module's own hyper-parameters that the class also takes,
then copies the zoo module's weights into it (same keys, or same shapes in the same order).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import operator
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from attnyolo.registry import ModuleSpec

_REF = re.compile(r"^\s*(timm|ultralytics):\s*([\w.]+)\s*(?:\(([^()]*(?:\([^()]*\)[^()]*)*)\))?\s*(.*)$")
_IN_CHANNELS = {"channels", "c1", "c", "dim", "in_channels", "in_chs", "chs", "inp", "n_dims", "gate_channels"}
_OUT_CHANNELS = {"c2", "dim_out", "out_channels", "c_out", "out_chs"}
_NOT_SHARED = {"act_layer", "gate_layer", "norm_layer", "device", "dtype"}  # ours are names, timm's classes
_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
}


@dataclass
class Reference:
    """A reference module ready to compare: ``weights`` says how ours were copied in (or why not)."""

    module: nn.Module
    source: str  # "timm.layers.cbam.CbamModule"
    weights: str  # "same keys", "by order", or "own init: <why>"

    @property
    def weights_copied(self) -> bool:
        return not self.weights.startswith("own init")


def parse_reference(text: str) -> tuple[str, str, dict[str, Any], str] | None:
    """``(library, name, kwargs, module_hint)`` from a spec's reference text; ``None`` if not a library.

    ``kwargs`` values may be expressions of ``C`` (the channel count), kept as source text until
    :func:`build_reference` evaluates them.
    """
    m = _REF.match(text or "")
    if not m:
        return None
    lib, name, inside, rest = m.groups()
    kwargs: dict[str, Any] = {}
    hint = ""
    for chunk in (inside or "", rest.removeprefix("with ").strip() if rest.startswith("with ") else ""):
        if not chunk.strip():
            continue
        if re.fullmatch(r"[\w.]+", chunk.strip()):
            hint = chunk.strip()
            continue
        try:
            call = ast.parse(f"f({chunk})", mode="eval").body
        except SyntaxError:
            continue
        if isinstance(call, ast.Call):
            kwargs.update({kw.arg: kw.value for kw in call.keywords if kw.arg})
    return lib, name, kwargs, hint


def _evaluate(node: ast.AST, channels: int) -> Any:
    """Literals, ``C``, + - * / //, unary minus, ``max``/``min``: enough for the specs' texts, nothing more."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id == "C":
        return channels
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand, channels)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_evaluate(node.left, channels), _evaluate(node.right, channels))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"max", "min"}:
        return {"max": max, "min": min}[node.func.id](*(_evaluate(a, channels) for a in node.args))
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_evaluate(e, channels) for e in node.elts)
    raise ValueError(f"unsupported expression {ast.unparse(node)!r}")


def _find_in_package(package: str, name: str) -> Any:
    pkg = importlib.import_module(package)
    if hasattr(pkg, name):
        return getattr(pkg, name)
    for info in pkgutil.iter_modules(pkg.__path__):
        try:
            mod = importlib.import_module(f"{package}.{info.name}")
        except Exception:  # noqa: BLE001 - an optional submodule that fails to import is not the one we want
            continue
        if hasattr(mod, name):
            return getattr(mod, name)
    raise LookupError(f"{name} not found in {package}")


def resolve_class(lib: str, name: str, hint: str = "") -> Callable[..., nn.Module]:
    """The class (or factory) a reference text names."""
    if "." in name:
        module, _, attr = name.rpartition(".")
        return getattr(importlib.import_module(module), attr)
    if hint:
        try:
            return getattr(importlib.import_module(hint), name)
        except (ImportError, AttributeError):
            pass
    if lib == "timm":
        if name.islower():
            from timm.layers.create_attn import get_attn

            found = get_attn(name)
            if found is not None:
                return found
        return _find_in_package("timm.layers", name)
    return _find_in_package("ultralytics.nn.modules", name)


def _signature(factory: Callable) -> inspect.Signature:
    target = getattr(factory, "func", factory)  # functools.partial
    return inspect.signature(target.__init__ if inspect.isclass(target) else target)


def _attribute(module: nn.Module, name: str) -> Any:
    for sub in module.modules():
        if name in vars(sub) and not isinstance(vars(sub)[name], (nn.Module, nn.Parameter)):
            return vars(sub)[name]
    raise LookupError(name)


def _copy_weights(ours: nn.Module, ref: nn.Module, name: str) -> str:
    src = ours.state_dict()
    if name in ADAPTERS:
        ref.load_state_dict(ADAPTERS[name](src, ref), strict=True)
        return "mapped"
    try:
        ref.load_state_dict(src, strict=True)
        return "same keys"
    except RuntimeError:
        pass
    dst = ref.state_dict()
    if len(src) != len(dst):
        return f"own init: {len(src)} vs {len(dst)} tensors"
    if all(a.shape == b.shape for a, b in zip(src.values(), dst.values(), strict=True)):
        ref.load_state_dict(dict(zip(dst, src.values(), strict=True)), strict=True)
        return "by order"
    # Same tensors in another order: pair them up shape by shape, each in its own order.
    pool: dict[tuple, list] = {}
    for v in src.values():
        pool.setdefault(tuple(v.shape), []).append(v)
    if sorted(pool) != sorted({tuple(v.shape) for v in dst.values()}) or any(
        len(pool[tuple(v.shape)]) != sum(tuple(w.shape) == tuple(v.shape) for w in dst.values()) for v in dst.values()
    ):
        return "own init: different shapes"
    ref.load_state_dict({k: pool[tuple(v.shape)].pop(0) for k, v in dst.items()}, strict=True)
    return "by shape"


# ---- weight layouts that differ from the reference's (see tests/attention/test_self_attention.py) -----------------


def _relative_table(table: torch.Tensor, rows: int) -> torch.Tensor:
    """Our ``2S-1``-row table as the ``rows``-row table timm needs: centre slice, or edge rows repeated
    (the distance clipping our module applies beyond ``S``)."""
    s, n = (table.shape[0] + 1) // 2, (rows + 1) // 2
    return table[[min(max(d, 1 - s), s - 1) + s - 1 for d in range(1 - n, n)]]


def _bottleneck_to_timm(sd: dict, ref: nn.Module) -> dict:
    rename = {"rel_height": "pos_embed.height_rel", "rel_width": "pos_embed.width_rel"}
    rows = {k: v.shape[0] for k, v in ref.state_dict().items()}
    out = {rename.get(k, k): v for k, v in sd.items()}
    return {k: _relative_table(v, rows[k]) if k.startswith("pos_embed.") else v for k, v in out.items()}


def _halo_to_timm(sd: dict, ref: nn.Module) -> dict:
    nh, dqk, dv = ref.num_heads, ref.dim_head_qk, ref.dim_head_v
    k, v = sd["kv.weight"].split([nh * dqk, nh * dv])
    out = {k.replace("rel_", "pos_embed.") + "_rel" if k.startswith("rel_") else k: v for k, v in sd.items()}
    # timm interleaves per head [k | v]; ours has all keys, then all values
    out["kv.weight"] = torch.cat([k.reshape(nh, dqk, *k.shape[1:]), v.reshape(nh, dv, *v.shape[1:])], 1).flatten(0, 1)
    if "kv.bias" in sd:
        kb, vb = sd["kv.bias"].split([nh * dqk, nh * dv])
        out["kv.bias"] = torch.cat([kb.reshape(nh, dqk), vb.reshape(nh, dv)], 1).flatten()
    return out


def _lambda_to_timm(sd: dict, ref: nn.Module) -> dict:
    out = dict(sd)
    out["conv_lambda.weight"] = sd["conv_lambda.weight"][..., None]  # 2D conv per value channel == (r, r, 1) 3D
    return out


def _ela_to_timm(sd: dict, ref: nn.Module) -> dict:
    # our 1-D depthwise kernels are timm's (k, 1) / (1, k) Conv2d kernels; index 0 = H strip, 1 = W strip
    out = {"conv_h.weight": sd["convs.0.weight"][..., None], "conv_w.weight": sd["convs.1.weight"][:, :, None]}
    for i, axis in enumerate("hw"):
        out.update({f"norm_{axis}.{k}": sd[f"norms.{i}.{k}"] for k in ("weight", "bias")})
        if f"convs.{i}.bias" in sd:
            out[f"conv_{axis}.bias"] = sd[f"convs.{i}.bias"]
    return out


ADAPTERS: dict[str, Callable[[dict, nn.Module], dict]] = {
    "bottleneck": _bottleneck_to_timm,
    "ela": _ela_to_timm,
    "halo": _halo_to_timm,
    "lambda": _lambda_to_timm,
}

# Reference arguments that follow from our module's configuration but not from a hyper-parameter of the same
# name (as the reference tests build them).
REFERENCE_KWARGS: dict[str, Callable[[nn.Module], dict]] = {
    # ours: hidden width max(C/16, 32) (the paper's L = 32); timm's rounding has no such floor
    "sk": lambda ours: {"rd_channels": ours.fc_reduce.out_channels},
    # ours: ResNeSt's BatchNorms (use_bn=True); timm's SplitAttn has none unless given a norm_layer
    "splat": lambda ours: {} if isinstance(ours.bn0, nn.Identity) else {"norm_layer": nn.BatchNorm2d},
}


def _gc_layer_norm_eps(ref: nn.Module) -> None:
    # timm's LayerNorm2d has eps 1e-6, the official GCNet code (and ours) 1e-5; no constructor argument sets it
    for mlp in (ref.mlp_add, ref.mlp_scale):
        if mlp is not None:
            mlp.norm.eps = 1e-5


# Settings of the reference that its constructor does not take, as the reference tests set them.
FIXUPS: dict[str, Callable[[nn.Module], None]] = {"gc": _gc_layer_norm_eps, "gca": _gc_layer_norm_eps}


def ours_overrides(spec: ModuleSpec, channels: int) -> dict[str, Any]:
    """Hyper-parameters of ours that the reference text sets to other values than our defaults.

    The text describes the configuration in which the two compute the same function, e.g. ``ela``'s
    ``(shared=False, norm_groups=1, act_layer='silu')``; ours is compared in that configuration.
    """
    parsed = parse_reference(spec.reference)
    if parsed is None:
        return {}
    out = {}
    for key, node in parsed[2].items():
        if key not in spec.defaults:
            continue
        try:
            value = _evaluate(node, channels)
        except ValueError:
            continue
        if value != spec.defaults[key]:
            out[key] = value
    return out


def build_reference(spec: ModuleSpec, ours: nn.Module, channels: int, hw: tuple[int, int]) -> Reference | None:
    """The reference of ``spec`` configured like ``ours`` (built with the spec's defaults) for an ``hw`` input.

    Returns ``None`` when the spec names no installed library; raises when the reference cannot be built.
    """
    parsed = parse_reference(spec.reference)
    if parsed is None:
        return None
    lib, name, raw_kwargs, hint = parsed
    factory = resolve_class(lib, name, hint)
    params = [p for p in _signature(factory).parameters.values() if p.name != "self"]
    names = {p.name for p in params}
    takes_var_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
    given = {k: _evaluate(v, channels) for k, v in raw_kwargs.items() if k in names or takes_var_kwargs}
    if lib == "timm":  # timm's *_layer arguments want classes where the text names them
        from timm.layers import get_act_layer

        given.update({k: get_act_layer(v) for k, v in given.items() if k.endswith("act_layer") and isinstance(v, str)})
    ignored = sorted(set(raw_kwargs) - set(given))

    takes_channels = bool(params) and params[0].name in _IN_CHANNELS
    kwargs: dict[str, Any] = {}
    for p in params[1:] if takes_channels else params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in given or p.name in _NOT_SHARED:
            continue
        if p.name == "feat_size" and "feat_size" in spec.defaults:
            kwargs[p.name] = tuple(hw)  # the reference is tied to one input size
        elif p.name in _OUT_CHANNELS and p.default is p.empty:
            kwargs[p.name] = channels
        elif p.name in spec.defaults and spec.defaults[p.name] is not None:
            kwargs[p.name] = spec.defaults[p.name]
        elif p.default is p.empty:
            kwargs[p.name] = _attribute(ours, p.name)
    kwargs.update(given)
    if spec.name in REFERENCE_KWARGS:
        kwargs.update(REFERENCE_KWARGS[spec.name](ours))
    args = (channels,) if takes_channels else ()
    try:
        ref = factory(*args, **kwargs)
    except (TypeError, ValueError, AssertionError):
        # our hyper-parameters may mean something else there: keep only what the text and the signature demand
        required = {p.name for p in params if p.default is p.empty}
        ref = factory(*args, **{k: v for k, v in kwargs.items() if k in required or k in given})
    target = getattr(factory, "func", factory)
    source = f"{target.__module__}.{getattr(target, '__qualname__', name)}"
    weights = _copy_weights(ours, ref, spec.name)
    if spec.name in FIXUPS:
        FIXUPS[spec.name](ref)
    if ignored:
        weights += f" (ignored {', '.join(ignored)}: not in this version)"
    return Reference(module=ref, source=source, weights=weights)
