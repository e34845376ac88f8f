"""Cost limits of a search: each candidate's added parameters, FLOPs and latency, measured on the built model before
any training, and the candidates over a limit pruned.

Parameters and FLOPs are :mod:`attnyolo.experiments.costs`'s counts on the edited model as Ultralytics builds it (the
data's class count; FLOPs at the recipe's ``imgsz``, batch 1, attention ops counted), against the base architecture
built the same way. Latency (batch-1 CPU, interleaved with the base) is measured only when a latency limit asks for
it: it takes seconds per candidate and is noise on a loaded machine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from attnyolo.experiments import costs
from attnyolo.graph import build
from attnyolo.search.candidates import SearchError

LATENCY_ROUNDS = 20


@dataclass(frozen=True)
class Limits:
    """Cost limits; ``None``: no limit. ``max_params`` counts added parameters, ``max_params_ratio`` divides them by
    the base's parameters; the ratios of FLOPs and latency are the candidate's over the base's."""

    max_params: int | None = None
    max_params_ratio: float | None = None
    max_gflops_ratio: float | None = None
    max_latency_ratio: float | None = None

    def describe(self) -> str:
        parts = []
        if self.max_params is not None:
            parts.append(f"added params <= {self.max_params:,}")
        if self.max_params_ratio is not None:
            parts.append(f"added params <= {self.max_params_ratio:.4g} x base params")
        if self.max_gflops_ratio is not None:
            parts.append(f"GFLOPs <= {self.max_gflops_ratio:.4g} x base")
        if self.max_latency_ratio is not None:
            parts.append(f"latency <= {self.max_latency_ratio:.4g} x base")
        return ", ".join(parts) or "none"


def _ratio(value: Any, what: str) -> float | None:
    if value is None:
        return None
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        raise SearchError(f"{what} must be a ratio > 0 such as 1.05, got {value!r}") from None
    if isinstance(value, bool) or not ratio > 0:
        raise SearchError(f"{what} must be a ratio > 0 such as 1.05, got {value!r}")
    return ratio


def limits(max_params: int | str | None = None, max_gflops_ratio: Any = None, max_latency_ratio: Any = None) -> Limits:
    """Checked limits. ``max_params``: a count of added parameters (``20000``) or a share of the base's (``"2%"``).

    Raises:
        SearchError: a limit that is not a positive count or ratio.
    """
    absolute = share = None
    if max_params is not None:
        text = str(max_params).strip().replace("_", "").replace(",", "")
        if isinstance(max_params, bool):
            text = ""
        if re.fullmatch(r"\d+", text):
            absolute = int(text)
        elif re.fullmatch(r"\d+(\.\d*)?%", text) and float(text[:-1]) > 0:
            share = float(text[:-1]) / 100
        else:
            raise SearchError(
                f"--max-params must be a count of added parameters (20000) or a share of the base's (2%), "
                f"got {max_params!r}"
            )
    return Limits(
        absolute,
        share,
        _ratio(max_gflops_ratio, "--max-gflops-ratio"),
        _ratio(max_latency_ratio, "--max-latency-ratio"),
    )


@dataclass
class Cost:
    params: int
    added_params: int
    gflops: float
    gflops_ratio: float
    latency_ratio: float | None = None
    pruned: str | None = None
    """Why the cost limits left the candidate out (``None``: it trains)."""

    def row(self) -> dict:
        return asdict(self)


def measure(
    base_cfg: Mapping, edited: Mapping[str, Mapping], nc: int, imgsz: int, latency: bool = False
) -> dict[str, Cost]:
    """The costs of every edited architecture (``label -> cfg``) against ``base_cfg``, built for ``nc`` classes."""
    x = torch.zeros(1, 3, imgsz, imgsz)
    base = build(dict(base_cfg), nc=nc).float().eval()
    base_params, base_gflops = costs.count_params(base), costs.count_flops(base, x).gflops
    out = {}
    for label, cfg in edited.items():
        net = build(dict(cfg), nc=nc).float().eval()
        params, gflops = costs.count_params(net), costs.count_flops(net, x).gflops
        ratio = costs.interleaved_latency(net, base, imgsz, rounds=LATENCY_ROUNDS).ratio if latency else None
        out[label] = Cost(params, params - base_params, gflops, gflops / base_gflops, ratio)
    return out


def prune(measured: Mapping[str, Cost], base_params: int, lim: Limits) -> None:
    """Mark (``Cost.pruned``) every candidate over a limit, naming the limit; refuse when none is left."""
    for c in measured.values():
        reasons = []
        if lim.max_params is not None and c.added_params > lim.max_params:
            reasons.append(f"added params {c.added_params:,} > {lim.max_params:,}")
        if lim.max_params_ratio is not None and c.added_params > lim.max_params_ratio * base_params:
            reasons.append(f"added params {c.added_params / base_params:.2%} of the base > {lim.max_params_ratio:.2%}")
        if lim.max_gflops_ratio is not None and c.gflops_ratio > lim.max_gflops_ratio:
            reasons.append(f"GFLOPs x{c.gflops_ratio:.4f} > x{lim.max_gflops_ratio:.4g}")
        if (
            lim.max_latency_ratio is not None
            and c.latency_ratio is not None
            and c.latency_ratio > lim.max_latency_ratio
        ):
            reasons.append(f"latency x{c.latency_ratio:.3f} > x{lim.max_latency_ratio:.4g}")
        c.pruned = "; ".join(reasons) or None
    if measured and all(c.pruned for c in measured.values()):
        cheapest = min(measured, key=lambda k: (measured[k].added_params, measured[k].gflops_ratio))
        c = measured[cheapest]
        raise SearchError(
            f"no candidate meets the cost limits ({lim.describe()}): the cheapest, {cheapest}, adds "
            f"{c.added_params:,} params at GFLOPs x{c.gflops_ratio:.4f}"
            + ("" if c.latency_ratio is None else f", latency x{c.latency_ratio:.3f}")
        )
