"""YOLOv5's own ``train.py``, ``val.py`` and ``export.py`` with the zoo registered, offline and loading safely.

- **Entry points.** :func:`train` fills YOLOv5's own argument namespace (``train.parse_opt(True)``, as its
  ``train.run(**kwargs)`` does) and calls ``train.main(opt, callbacks)`` (``run`` cannot take callbacks);
  :func:`val` and :func:`export` call ``val.run`` and ``export.run``. The package's or the clone's, whichever
  :func:`attnyolo.hosts.yolov5.locate` chose.
- **Safe loading.** YOLOv5 loads checkpoints with a bare ``torch.load(path)``, which is ``weights_only=True`` since
  torch 2.6 and therefore refuses every YOLOv5 checkpoint. attnyolo does not turn the full pickle back on: each file
  YOLOv5 is about to load (``--weights`` of train, val and export; the run's own ``last.pt``/``best.pt``, reloaded to
  strip and
  validate) is first vetted by :func:`attnyolo.checkpoints.load_checkpoint` (allow-list, no constructor calls, no
  hooks, a checked model YAML), and the globals it needs are then added to torch's safe globals, so YOLOv5's own
  ``weights_only`` load succeeds. The files a run writes itself also hold a numpy array (``best_fitness``) until
  YOLOv5 strips them: :func:`allow_run_checkpoints`. A file outside the allow-list stops the run with one line;
  ``trust`` skips the vetting and turns on the full pickle for the run (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``), for
  files you trust.
- **The optimiser.** YOLOv5's ``smart_optimizer`` puts a model's parameters in three groups by their attribute
  name: ``bias``, BatchNorm ``weight`` (no decay), other ``weight`` (decay). Any other name is in no group and is
  silently never trained: that includes every inserted layer's identity-start ``gamma``, which would stay 0 and
  keep the attention switched off for the whole run. ``train.smart_optimizer`` (looked up at call time) is wrapped
  so that every parameter left out of its groups (the gammas, an attention's own ``alpha``, ``pos_emb``...) joins
  its no-decay group (:func:`regroup_parameters`), with YOLOv5's learning rate, warm-up and schedule. Unlike the
  Ultralytics host, gamma gets no group of its own (``lr0 * 10`` there): YOLOv5's loggers expect exactly its three
  groups.
- **Determinism.** ``train.py`` seeds with ``init_seeds(seed + 1, deterministic=True)``, which turns on
  ``torch.use_deterministic_algorithms(True)``: on a GPU that raises for ops without a deterministic CUDA kernel,
  among them the backward of ``AdaptiveAvgPool2d`` that most zoo attentions (SE, CBAM, ECA...) use, so every such run
  would stop at its first step. ``train.init_seeds`` (looked up at call time) is wrapped to keep YOLOv5's seeding
  and determinism but in warn-only mode (:func:`_wrap_init_seeds`): deterministic wherever torch can be, a warning
  where it cannot.
- **Plots** are off by default (``noplots=True`` for train, ``plots=False`` for val): YOLOv5 v7.0 draws labels
  with Pillow's ``FreeTypeFont.getsize``, removed in Pillow 10, so every plot thread fails; pass ``noplots=False``
  / ``plots=True`` with an older Pillow.
- **gamma log.** A callback writes ``attnyolo_gamma.csv`` (``epoch, layer, attention, gamma``) in the run folder
  after every epoch (YOLOv5's callbacks hand out the training model once per batch; the EMA model is not exposed,
  so the column ``gamma_ema`` of the Ultralytics host is absent).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy
import torch
import yaml

from attnyolo.checkpoints import load_checkpoint
from attnyolo.checkpoints.pickle_scan import allow_list, zip_data_pkl
from attnyolo.finetune import GAMMA_CSV, gamma_values
from attnyolo.graph.ultralytics import register as register_zoo
from attnyolo.hosts.yolov5.errors import YOLOv5HostError
from attnyolo.hosts.yolov5.layers import register
from attnyolo.hosts.yolov5.source import YOLOv5Code

_TRUST_ENV = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
GAMMA_COLUMNS = ("epoch", "layer", "attention", "gamma")


def allow_file(path: str | os.PathLike, *, trust: bool = False) -> None:
    """Vet checkpoint ``path`` with attnyolo's safe loader, then let torch's ``weights_only`` load accept it.

    Raises:
        CheckpointError: the file is refused (names the file and the globals); pass ``trust`` for files you trust.
    """
    path = Path(path)
    if trust:
        os.environ[_TRUST_ENV] = "1"  # YOLOv5's torch.load becomes a full pickle load for this process
        return
    load_checkpoint(path)  # raises for anything outside the allow-list, hooks, or a YAML that runs code
    torch.serialization.add_safe_globals(allow_list(path, zip_data_pkl(path)))


def allow_run_checkpoints() -> None:
    """Let torch's ``weights_only`` load rebuild numpy arrays (data, no code), for the checkpoints this run writes.

    YOLOv5 stores ``best_fitness`` as a numpy array in ``last.pt``/``best.pt`` and reloads both at the end of the run
    (``strip_optimizer``, final validation), which sets it to ``None``; the finished files hold no array, so a later
    process vets them with the usual allow-list. These are the globals torch's documentation names for numpy arrays.
    """
    reconstruct = numpy.ndarray.__reduce__(numpy.zeros(0))[0]  # numpy's _reconstruct, under its own module name
    scalar = numpy.float64(0).__reduce__()[0]
    dtypes = [c for c in vars(numpy.dtypes).values() if isinstance(c, type) and issubclass(c, numpy.dtype)]
    torch.serialization.add_safe_globals([reconstruct, numpy.ndarray, numpy.dtype, scalar, *dtypes])


def _prepare(yolov5: str | os.PathLike | None) -> YOLOv5Code:
    register_zoo()  # the adapters and zoo classes in torch's safe globals (checkpoints hold them)
    return register(yolov5)


def regroup_parameters(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> int:
    """Put every trainable parameter that YOLOv5's ``smart_optimizer`` left out of its groups (the gammas, an
    attention's ``alpha``/``pos_emb``...) into its no-decay group (the BatchNorm weights'). Returns how many.

    A group of their own (the Ultralytics host gives gamma ``lr0 * 10``) is not possible here: YOLOv5's loggers
    write one learning-rate column per group under three fixed names and fail on a fourth group.
    """
    grouped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    left_out = [p for p in model.parameters() if p.requires_grad and id(p) not in grouped]
    if left_out:
        no_decay = [g for g in optimizer.param_groups[1:] if g.get("weight_decay", 0.0) == 0.0]
        (no_decay[-1] if no_decay else optimizer.param_groups[0])["params"].extend(left_out)
    return len(left_out)


class GammaLog:
    """YOLOv5 callbacks: keep the training model from the batch callback, write the gamma CSV each epoch."""

    def __init__(self, save_dir: Path) -> None:
        self.path = Path(save_dir) / GAMMA_CSV
        self.model: torch.nn.Module | None = None
        self.rows: list[tuple] = []

    def on_train_batch_end(self, model: Any, *args: Any) -> None:
        self.model = model

    def on_fit_epoch_end(self, log_vals: Any, epoch: int, *args: Any) -> None:
        values = gamma_values(self.model) if self.model is not None else []
        if not values:
            return
        self.rows += [(epoch, layer, attention, f"{gamma:.6g}") for layer, attention, gamma in values]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(GAMMA_COLUMNS)
            writer.writerows(self.rows)


def _callbacks(code: YOLOv5Code, save_dir: Path, trust: bool, extra: Mapping[str, Callable] | None = None) -> Any:
    callbacks = code.module("utils.callbacks").Callbacks()
    for hook, action in (extra or {}).items():  # the caller's own (the grid's progress, the final validation)
        callbacks.register_action(hook, "attnyolo_caller", action)
    log = GammaLog(save_dir)
    callbacks.register_action("on_train_batch_end", "attnyolo_gamma", log.on_train_batch_end)
    callbacks.register_action("on_fit_epoch_end", "attnyolo_gamma", log.on_fit_epoch_end)
    # each checkpoint YOLOv5 saves (from the model in memory) is reloaded by YOLOv5: strip_optimizer, final val
    callbacks.register_action("on_model_save", "attnyolo_allow", lambda *a: allow_run_checkpoints())
    return callbacks


def _wrap_optimizer(train_module: Any) -> None:
    original = getattr(train_module.smart_optimizer, "__wrapped__", train_module.smart_optimizer)

    def smart_optimizer(model, *args, **kwargs):
        optimizer = original(model, *args, **kwargs)
        regroup_parameters(optimizer, model)
        return optimizer

    smart_optimizer.__wrapped__ = original
    train_module.smart_optimizer = smart_optimizer


def _wrap_init_seeds(train_module: Any) -> None:
    original = getattr(train_module.init_seeds, "__wrapped__", train_module.init_seeds)

    def init_seeds(seed: int = 0, deterministic: bool = False) -> None:
        original(seed, deterministic=deterministic)
        if deterministic and torch.are_deterministic_algorithms_enabled():
            torch.use_deterministic_algorithms(True, warn_only=True)  # see the module docstring: Determinism

    init_seeds.__wrapped__ = original
    train_module.init_seeds = init_seeds


def train(
    *,
    data: str | os.PathLike,
    cfg: str | os.PathLike = "",
    weights: str | os.PathLike = "",
    yolov5: str | os.PathLike | None = None,
    trust: bool = False,
    callbacks: Mapping[str, Callable] | None = None,
    **options: Any,
) -> Path:
    """Train with YOLOv5's own ``train.py`` (``main(opt, callbacks)``); returns the run folder.

    Args:
        data: a data YAML (YOLOv5 reads the same format as Ultralytics: ``path``, ``train``, ``val``, ``names``).
        cfg: the model YAML (an edited original YAML); may be empty when ``weights`` carries the model.
        weights: a start checkpoint (``attnyolo transfer`` writes one); vetted before YOLOv5 loads it.
        yolov5: a v7.0 clone folder (default ``$ATTNYOLO_YOLOV5``, else the installed package).
        trust: full pickle loads for this run (only for checkpoints you trust).
        callbacks: more YOLOv5 callbacks, hook name -> action (``{"on_train_end": f}``), beside attnyolo's own.
        options: any other ``train.py`` option by its attribute name (``epochs=1, imgsz=128, batch_size=4,
            device="cpu", workers=0, project=..., name=..., exist_ok=True, hyp=...``).

    Raises:
        YOLOv5HostError: an unknown option; CheckpointError: ``weights`` refused.
    """
    code = _prepare(yolov5)
    module = code.module("train")
    opt = module.parse_opt(True)
    unknown = sorted(k for k in options if not hasattr(opt, k))
    if unknown:
        raise YOLOv5HostError(f"unknown YOLOv5 train option(s) {unknown}; known: {', '.join(sorted(vars(opt)))}")
    if weights:
        allow_file(weights, trust=trust)
    options = {"noplots": True, **options}  # YOLOv5 v7.0's plots call Pillow's getsize, gone since Pillow 10
    for key, value in {**options, "data": str(data), "cfg": str(cfg), "weights": str(weights)}.items():
        setattr(opt, key, value)
    save_dir = Path(code.module("utils.general").increment_path(Path(opt.project) / opt.name, exist_ok=opt.exist_ok))
    opt.exist_ok = True  # main() computes the same folder: keep it (it exists once this run starts writing)
    opt.name, opt.project = save_dir.name, str(save_dir.parent)
    _wrap_optimizer(module)
    _wrap_init_seeds(module)
    module.main(opt, _callbacks(code, save_dir, trust, callbacks))
    return save_dir


def val(
    *,
    data: str | os.PathLike,
    weights: str | os.PathLike,
    yolov5: str | os.PathLike | None = None,
    trust: bool = False,
    **options: Any,
) -> Any:
    """Validate with YOLOv5's own ``val.run``; returns what it returns: ``((mp, mr, map50, map, *losses), maps, ...)``
    (the package adds per-class mAP50 before the timings)."""
    code = _prepare(yolov5)
    allow_file(weights, trust=trust)
    options = {"plots": False, **options}  # YOLOv5 v7.0's plots call Pillow's getsize, gone since Pillow 10
    return code.module("val").run(data=str(data), weights=str(weights), **options)


def export(
    *,
    weights: str | os.PathLike,
    include: tuple[str, ...] = ("onnx",),
    yolov5: str | os.PathLike | None = None,
    trust: bool = False,
    opset: int = 17,
    **options: Any,
) -> list[str]:
    """Export with YOLOv5's own ``export.run`` (ONNX at opset 17 by default: some zoo layers need it); returns the
    files written."""
    code = _prepare(yolov5)
    allow_file(weights, trust=trust)
    if isinstance(options.get("imgsz"), int):  # export.run wants a list (h, w); train/val take an int
        options["imgsz"] = [options["imgsz"]] * 2
    return list(code.module("export").run(weights=str(weights), include=tuple(include), opset=opset, **options))


def options_from(pairs: list[str]) -> Mapping[str, Any]:
    """``["epochs=1", "imgsz=128"]`` -> ``{"epochs": 1, "imgsz": 128}`` (values read as YAML scalars)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise YOLOv5HostError(f"YOLOv5 option {pair!r} must read key=value (epochs=1, imgsz=128, device=cpu)")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value) if value else ""
    return out
