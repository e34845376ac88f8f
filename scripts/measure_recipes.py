"""Measure fine-tune recipes under which inserted attention engages (issue 21, item 2): r, gamma, mAP, wall time.

From the shipped base on the embedded data, for the control (nothing inserted) and each attention variant, one run
per (recipe, variant, seed); after each run, on the run's ``best.pt`` (the EMA model Ultralytics keeps):

- r per attention layer: ``||out - in|| / ||in||`` per validation image (forward hooks on every
  ``AttentionLayer``), median over the 87 embedded val images at imgsz 320 (letterboxed to 320x320, batches of 16);
- max |gamma| over the layers;
- val mAP50-95 with :func:`attnyolo.data.base_checkpoint.validate` (the settings the base's recorded 0.4112 was
  measured with);
- wall seconds of ``YOLO.train`` (train + per-epoch val + Ultralytics' final val) and of the r measurement.

Recipes (all: 2 epochs at 320, AdamW lr0 1e-4, no Ultralytics warm-up, no mosaic, batch 16, nbs 64):

- ``a-demo``: today's demo recipe (gamma at lr0 x 10 in its own group, everything else at lr0);
- ``b-new100``: every new tensor (the attention's weights too) at lr0 x 100, gamma at lr0 x 100;
- ``b-nbs16``: no freezing, but an optimiser step per batch for the whole run (``nbs=16``), new tensors at
  lr0 x 100, gamma at lr0 x 1000 (is it the frozen phase or the step cadence that makes the attention engage?);
- ``c-warmup``: attention warm-up: epoch 1 trains only the new tensors (transferred frozen, BatchNorm statistics
  kept) with an optimiser step per batch, new tensors at lr0 x 100 and gamma at lr0 x 1000; epoch 2 joint;
- ``c-warmup-g100``: as ``c-warmup`` with gamma at lr0 x 100;
- ``c-warmup-g300``: as ``c-warmup`` with gamma at lr0 x 300 (SimAM, whose only tensor is gamma, did not reach
  r 0.05 at x 100);
- ``e1-default``: the default recipe of a 1-epoch run (``default_recipe(1)``: no warm-up, new tensors at lr0 x 100,
  gamma at lr0 x 300) with ``epochs=1``;
- ``e1-warmup``: a 1-epoch run that is all warm-up (only the new tensors train), for comparison;
- ``c-warmup-lrf1``: as ``c-warmup`` with ``lrf=1`` (no linear decay: the joint epoch runs at lr0, not lr0 / 2);
- ``d-warmup-channel``: as ``c-warmup`` with a per-channel gamma (LayerScale-like, shape 1xCx1x1, zeros) instead of
  the scalar. The adapter has no such option today: this script swaps the gamma of every ``AttentionLayer`` at
  construction (a patch of ``AttentionLayer.__init__`` in this process only, so the start model and the model
  Ultralytics' trainer rebuilds from the YAML both get it). Identity start stays exact (``lerp(x, y, 0) == x``).

Usage (results appended to OUT/measurements.jsonl, one JSON line per run; finished runs are skipped)::

    nice -n 10 python scripts/measure_recipes.py --recipes c-warmup,a-demo --variants control,cbam@neck --seeds 0
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

import attnyolo  # noqa: F401  (offline switches first)
from attnyolo.checkpoints import load_safetensors_model, save_ultralytics_checkpoint
from attnyolo.data import default_dataset
from attnyolo.data.base_checkpoint import RECORDED, base_path, validate
from attnyolo.data.check import check_data, split_images
from attnyolo.experiments.demo import DEMO_RECIPE
from attnyolo.finetune import add_gamma_logging, add_gamma_optimiser, gamma_values, prepare
from attnyolo.finetune.recipe import Recipe
from attnyolo.graph.adapter import AttentionLayer
from attnyolo.models import unwrap

COMMON = dict(DEMO_RECIPE)  # the demo's recipe; each recipe below adds its own options
RECIPES: dict[str, tuple[dict, Recipe]] = {
    "a-demo": ({}, Recipe()),
    "b-new100": ({}, Recipe(new_lr_scale=100, gamma_lr_scale=100)),
    "c-warmup": ({}, Recipe(warmup_epochs=1, new_lr_scale=100, gamma_lr_scale=1000)),
    "c-warmup-g100": ({}, Recipe(warmup_epochs=1, new_lr_scale=100, gamma_lr_scale=100)),
    "c-warmup-g300": ({}, Recipe(warmup_epochs=1, new_lr_scale=100, gamma_lr_scale=300)),
    "e1-default": ({"epochs": 1}, Recipe(new_lr_scale=100, gamma_lr_scale=300)),
    "e1-warmup": ({"epochs": 1}, Recipe(warmup_epochs=1, new_lr_scale=100, gamma_lr_scale=300)),
    "d-warmup-channel": ({}, Recipe(warmup_epochs=1, new_lr_scale=100, gamma_lr_scale=1000)),
    "b-nbs16": ({"nbs": 16}, Recipe(new_lr_scale=100, gamma_lr_scale=1000)),
    "c-warmup-lrf1": ({"lrf": 1.0}, Recipe(warmup_epochs=1, new_lr_scale=100, gamma_lr_scale=1000)),
}
PER_CHANNEL_GAMMA = {"d-warmup-channel"}
_scalar_gamma_init = AttentionLayer.__init__


def _per_channel_gamma_init(self, *args, **kwargs):
    _scalar_gamma_init(self, *args, **kwargs)
    if self.gamma is not None:
        self.gamma = torch.nn.Parameter(torch.zeros(1, self.channels, 1, 1))


def gamma_max_abs(model: torch.nn.Module) -> dict[str, float]:
    """max |gamma| of every attention layer (a scalar gamma: its absolute value)."""
    return {k: float(m.gamma.detach().abs().max()) for k, m in attention_layers(model) if m.gamma is not None}


def attention_layers(model: torch.nn.Module) -> list[tuple[str, AttentionLayer]]:
    """``(label, layer)`` of every AttentionLayer: ``"12"`` for an inserted row, ``"15.m.0.attn"`` inside a block."""
    net = unwrap(model)
    out = []
    for name, m in net.named_modules():
        if isinstance(m, AttentionLayer):
            out.append((name.removeprefix("model."), m))
    return out


def letterboxed(path: Path, size: int) -> torch.Tensor:
    """One image as the validator feeds it: letterboxed to ``size`` (grey 114 borders), RGB, 0..1, 1x3xHxW."""
    from ultralytics.data.augment import LetterBox

    im = cv2.imread(str(path))
    im = LetterBox(new_shape=(size, size), auto=False)(image=im)
    im = np.ascontiguousarray(im[..., ::-1].transpose(2, 0, 1))
    return torch.from_numpy(im).float().div(255).unsqueeze(0)


def engagement(model: torch.nn.Module, images: list[Path], imgsz: int) -> dict[str, float]:
    """Median over ``images`` of ``||out - in|| / ||in||`` for every attention layer of ``model``."""
    net = unwrap(model).float().eval()
    ratios: dict[str, list[float]] = {}
    hooks = []
    for label, layer in attention_layers(net):

        def hook(module, args, output, label=label):
            x = args[0]
            diff = (output.float() - x.float()).flatten(1).norm(dim=1)
            ratios.setdefault(label, []).extend((diff / x.float().flatten(1).norm(dim=1)).tolist())

        hooks.append(layer.register_forward_hook(hook))
    try:
        with torch.no_grad():
            for i in range(0, len(images), 16):  # batches of 16: the per-image norms do not depend on the batch
                net(torch.cat([letterboxed(p, imgsz) for p in images[i : i + 16]]))
    finally:
        for h in hooks:
            h.remove()
    return {k: statistics.median(v) for k, v in ratios.items()}


def run(name: str, variant: str, seed: int, out: Path, images: list[Path]) -> dict:
    from ultralytics import YOLO

    overrides, recipe = RECIPES[name]
    AttentionLayer.__init__ = _per_channel_gamma_init if name in PER_CHANNEL_GAMMA else _scalar_gamma_init
    data = default_dataset()
    base = Path(base_path())
    if variant == "control":
        model = load_safetensors_model(base).float()
        transferred = set(model.state_dict())
    else:
        attention, where = variant.split("@")
        prepared = prepare(base, attention, where, data)
        model, transferred = prepared.model, {dst for _, dst in prepared.report.transferred}
    run_name = f"{name}-{variant.replace('@', '_')}-s{seed}"
    start = save_ultralytics_checkpoint(model, out / f".{run_name}-start.pt", {"base": str(base)}, data=data)
    yolo = YOLO(str(start))
    if name not in PER_CHANNEL_GAMMA:  # the gamma CSV holds scalars
        add_gamma_logging(yolo)
    add_gamma_optimiser(yolo)
    args = {**COMMON, **overrides}
    recipe.install(yolo, transferred, epochs=args["epochs"])
    t0 = time.perf_counter()
    yolo.train(data=str(data), project=str(out), name=run_name, exist_ok=True, seed=seed, **args)
    train_s = time.perf_counter() - t0
    best = unwrap(yolo.model).float().eval()
    t0 = time.perf_counter()
    r = engagement(best, images, args["imgsz"])
    r_s = time.perf_counter() - t0
    gammas = gamma_max_abs(best) if name in PER_CHANNEL_GAMMA else {str(i): g for i, _, g in gamma_values(best)}
    val = validate(best, imgsz=args["imgsz"])
    return {
        "recipe": name,
        "variant": variant,
        "seed": seed,
        "r": r,
        "r_median": statistics.median(r.values()) if r else None,
        "gamma": gammas,
        "max_abs_gamma": max((abs(g) for g in gammas.values()), default=None),
        "map50_95": val["map50_95"],
        "base_map50_95": RECORDED["map50_95"],
        "train_s": round(train_s, 1),
        "r_s": round(r_s, 1),
    }


def table(log: Path) -> str:
    """The measurements as a markdown table, one row per run, in the order they ran."""
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    out = [
        "| recipe | variant | seed | r per layer (median over val images) | median r | max abs(gamma) | "
        "mAP50-95 | vs base 0.4112 | train s | r s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d in rows:
        r = " / ".join(f"{v:.3f}" for v in d["r"].values()) or "-"
        med = "-" if d["r_median"] is None else f"{d['r_median']:.3f}"
        g = "-" if d["max_abs_gamma"] is None else f"{d['max_abs_gamma']:.3f}"
        delta = d["map50_95"] - d["base_map50_95"]
        out.append(
            f"| {d['recipe']} | {d['variant']} | {d['seed']} | {r} | {med} | {g} | {d['map50_95']:.4f} | "
            f"{delta:+.4f} | {d['train_s']:.0f} | {d['r_s']:.0f} |"
        )
    out += ["", summary(rows)]
    return "\n".join(out)


def summary(rows: list[dict]) -> str:
    """One row per (recipe, variant): the seeds side by side (``seed 0 / seed 1``)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for d in rows:
        groups.setdefault((d["recipe"], d["variant"]), []).append(d)
    out = [
        "| recipe | variant | seeds | median r | lowest layer r | max abs(gamma) | mAP50-95 | mean train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (recipe, variant), ds in sorted(groups.items()):
        ds = sorted(ds, key=lambda d: d["seed"])

        def each(fmt, get, ds=ds):
            values = [get(d) for d in ds]
            return " / ".join("-" if v is None else fmt.format(v) for v in values)

        out.append(
            f"| {recipe} | {variant} | {each('{}', lambda d: d['seed'])} | {each('{:.3f}', lambda d: d['r_median'])} | "
            f"{each('{:.3f}', lambda d: min(d['r'].values()) if d['r'] else None)} | "
            f"{each('{:.3f}', lambda d: d['max_abs_gamma'])} | {each('{:.4f}', lambda d: d['map50_95'])} | "
            f"{statistics.mean(d['train_s'] for d in ds):.0f} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="c-warmup,a-demo,b-new100")
    parser.add_argument("--variants", default="control,cbam@neck")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--out", type=Path, default=Path("/tmp/recipe/measure_recipes"))
    parser.add_argument("--table", action="store_true", help="print OUT/measurements.jsonl as a markdown table")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "measurements.jsonl"
    if args.table:
        print(table(log))
        return
    done = set()
    if log.is_file():
        for line in log.read_text().splitlines():
            d = json.loads(line)
            done.add((d["recipe"], d["variant"], d["seed"]))
    images = sorted(split_images(check_data(default_dataset())["val"]))
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name in args.recipes.split(","):
            for variant in args.variants.split(","):
                if (name, variant, seed) in done:
                    continue
                res = run(name, variant, seed, args.out, images)
                print("RESULT " + json.dumps(res), flush=True)
                with open(log, "a") as f:
                    f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
