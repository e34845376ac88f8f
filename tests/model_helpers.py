"""The helper module of the checkpoint, weight-transfer and fine-tune tests (at tests/ so every folder imports it:
pytest's prepend mode puts the root conftest's folder on ``sys.path``): tiny models, a hand-edited YOLOv8n YAML,
trained bases and fine-tuning recipes, and files that attack the loaders (pickle payloads, model YAMLs that would
run code)."""

from __future__ import annotations

import copy
import os
import pathlib
import shutil
from pathlib import Path

import torch
import yaml
from filelock import FileLock
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

BASE_HEAD_AFTER_INSERT = [  # yolov8n's head with one row inserted after layer 10 (the first neck layer), by hand
    [-1, 1, "nn.Upsample", ["None", 2, "nearest"]],  # 10
    None,  # 11: the inserted row
    [[-1, 6], 1, "Concat", [1]],  # 12 (was 11)
    [-1, 3, "C2f", [512]],  # 13 (was 12)
    [-1, 1, "nn.Upsample", ["None", 2, "nearest"]],  # 14 (was 13)
    [[-1, 4], 1, "Concat", [1]],  # 15 (was 14)
    [-1, 3, "C2f", [256]],  # 16 (was 15)
    [-1, 1, "Conv", [256, 3, 2]],  # 17 (was 16)
    [[-1, 13], 1, "Concat", [1]],  # 18 (was 17; its input 12 is now 13)
    [-1, 3, "C2f", [512]],  # 19 (was 18)
    [-1, 1, "Conv", [512, 3, 2]],  # 20 (was 19)
    [[-1, 9], 1, "Concat", [1]],  # 21 (was 20; 9 is before the insert point)
    [-1, 3, "C2f", [1024]],  # 22 (was 21)
    [[16, 19, 22], 1, "Detect", ["nc"]],  # 23 (was 22; inputs 15, 18, 21 shifted)
]
INSERT_AFTER_10 = {old: old if old <= 10 else old + 1 for old in range(23)}
"""The insertion's index map: layers 0-10 keep their index, every later one moves up by one."""


def yolov8n_cfg() -> dict:
    return yaml_model_load("yolov8n.yaml")


def edited_cfg(row: list) -> dict:
    """yolov8n's YAML with ``row`` inserted after layer 10, written out by hand above (no engine involved)."""
    cfg = yolov8n_cfg()
    cfg["head"] = copy.deepcopy([row if r is None else r for r in BASE_HEAD_AFTER_INSERT])
    return cfg


def build(cfg: dict, nc: int = 3, seed: int = 0) -> DetectionModel:
    """A model whose every tensor (BatchNorm statistics included) differs from a fresh build's."""
    torch.manual_seed(seed)
    model = DetectionModel(copy.deepcopy(cfg), nc=nc, verbose=False)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():  # small positive changes: running_var stays positive, activations tame
                t.mul_(0.95 + 0.1 * torch.rand_like(t)).add_(1e-3 * torch.rand_like(t))
    return model.eval()


def train_tiny(data: Path, project: Path) -> tuple[Path, Path]:
    """Train YOLOv8n for one epoch on 5% of the embedded dataset at 64 px (seconds on a CPU).

    Returns the final ``best.pt`` (stripped: ``model`` in fp16, no EMA/optimizer) and a copy of ``last.pt`` as
    saved during training (``ema``, optimizer state, ``IterableSimpleNamespace`` args).
    """
    from ultralytics import YOLO

    mid = project / "mid_training_last.pt"
    model = YOLO("yolov8n.yaml")
    model.add_callback("on_model_save", lambda trainer: shutil.copyfile(trainer.last, mid))
    model.train(data=str(data), epochs=1, imgsz=64, fraction=0.05, val=False, project=str(project), name="train",
                **QUIET_CPU)  # fmt: skip
    return project / "train" / "weights" / "best.pt", mid


class CallsFunction:
    """Unpickles as ``func(*args)``: the classic pickle payload."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def payloads(marker: Path) -> dict[str, tuple[object, str]]:
    """Payloads that would each create ``marker`` if unpickled, with the global the error must name."""
    return {
        "os.system": (CallsFunction(os.system, f"touch {marker}"), f"{os.system.__module__}.system"),
        "builtins.exec": (CallsFunction(exec, f"open({str(marker)!r}, 'w').close()"), "builtins.exec"),
        "Path.write_text": (CallsFunction(pathlib.Path.write_text, marker, "pwned"), "builtins.getattr"),
    }


# Enough training for YOLOv8n from scratch to find some blood cells (mAP50 > 0 on the embedded val split), so
# "the identity start's metrics equal the base's" compares real numbers, not zeros: one epoch at any size the
# suite can afford leaves every metric at 0. Deterministic (Ultralytics' seed=0, deterministic=True).
QUIET_CPU = dict(workers=0, device="cpu", plots=False, verbose=False)
"""Every Ultralytics call in these tests: CPU, no loader workers, no plots, no log."""
BASE_RECIPE = dict(epochs=6, imgsz=96, batch=8, optimizer="AdamW", lr0=0.005, warmup_epochs=0, seed=0, val=False,
                   **QUIET_CPU)  # fmt: skip
VAL_ARGS = dict(imgsz=96, batch=16, **QUIET_CPU)

# Fine-tuning runs in the tests: a few images, one optimiser step per batch (nbs=batch), no warm-up (whose first
# step has learning rate 0), so that two epochs really move the weights.
TINY_RUN = dict(imgsz=64, fraction=0.05, batch=4, nbs=4, warmup_epochs=0, optimizer="AdamW", lr0=0.01, val=False,
                exist_ok=True, **QUIET_CPU)  # fmt: skip


def shared_base(data: Path, root: Path) -> Path:
    """``best.pt`` of the base run in ``root`` (shared by the xdist workers), trained by whoever gets there first."""
    best = root / "finetune-base" / "train" / "weights" / "best.pt"
    with FileLock(str(root / "finetune-base.lock")):
        if not best.exists():
            from ultralytics import YOLO

            YOLO("yolov8n.yaml").train(data=str(data), project=str(root / "finetune-base"), name="train",
                                       exist_ok=True, **BASE_RECIPE)  # fmt: skip
    return best


def save_ultralytics(model: torch.nn.Module, path: Path) -> Path:
    """A checkpoint ``YOLO(path)`` loads (Ultralytics' own format: the model under ``model``)."""
    torch.save({"model": model.eval(), "train_args": {}}, path)
    return path


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------------------------ hostile files


class CallsConstructor:
    """Unpickles as ``cls(*args)``: a constructor call on an allowed layer class, with arguments from the file."""

    def __init__(self, cls, *args):
        self.cls, self.args = cls, args

    def __reduce__(self):
        return self.cls, self.args


def touch_code(marker: Path) -> str:
    """Python source that creates ``marker``: what a hostile file would run."""
    return f"open({str(marker)!r}, 'w').close()"


def hostile_activation(marker: Path) -> str:
    """An ``activation:`` string that ``parse_model``'s ``eval()`` turns into code execution."""
    return f"exec({touch_code(marker)!r})"


def hostile_files(root: Path) -> dict[str, tuple[Path, Path, str]]:
    """Files that would each create their marker when loaded naively: ``name -> (file, marker, refused value)``.

    The refused value is the text the loader's error must name. Every payload is live: Ultralytics would run it
    (``DetectionModel(cfg)`` evaluates the activation; a full pickle load calls the REDUCE targets).
    """
    from attnyolo.checkpoints import save_safetensors

    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[Path, Path, str]] = {}

    for suffix in ("safetensors", "pt"):
        marker = root / f"activation-{suffix}.ran"
        model = DetectionModel(yolov8n_cfg(), nc=3, verbose=False)
        model.yaml["activation"] = hostile_activation(marker)
        path = root / f"activation.{suffix}"
        save_safetensors(model, path) if suffix == "safetensors" else torch.save({"model": model}, path)
        out[f"activation.{suffix}"] = (path, marker, "exec(")

    marker = root / "nested-model.ran"  # a model class named as a layer builds another YAML, whose activation runs
    inner = root / "inner.yaml"
    inner.write_text(yaml.safe_dump({**yolov8n_cfg(), "activation": hostile_activation(marker)}))
    model = DetectionModel(yolov8n_cfg(), nc=3, verbose=False)
    model.yaml["head"][0] = [-1, 1, "DetectionModel", [str(inner)]]
    path = save_safetensors(model, root / "nested-model.safetensors")
    out["nested-model.safetensors"] = (path, marker, "'DetectionModel'")

    marker = root / "system.ran"
    torch.save({"model": CallsFunction(os.system, f"touch {marker}")}, root / "system.pt")
    out["system.pt"] = (root / "system.pt", marker, f"{os.system.__module__}.system")

    marker = root / "constructor.ran"
    cfg = {**yolov8n_cfg(), "activation": hostile_activation(marker)}
    torch.save({"model": CallsConstructor(DetectionModel, cfg)}, root / "constructor.pt")
    out["constructor.pt"] = (root / "constructor.pt", marker, "DetectionModel (called as a constructor")
    return out


def _cli(argv: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    from attnyolo.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, err.getvalue()


def load_hostile_files(root: Path) -> dict:
    """Load every file of :func:`hostile_files` through every loader; run in a child process (``python -O``).

    Returns ``{"debug": __debug__, "files": {file: [path, marker, refused value]}, "results": {file: {loader:
    {"error", "message", "rc", "payload_ran"}}}}``.
    """
    import attnyolo

    files = hostile_files(root)
    model = attnyolo.build("yolov8n.yaml", nc=3)
    data = str(root / "data.yaml")  # never read: every loader must stop at the checkpoint
    loaders = {
        "load_safetensors_model": lambda p: attnyolo.load_safetensors_model(p),
        "load_checkpoint": lambda p: attnyolo.load_checkpoint(p),
        "transfer": lambda p: attnyolo.transfer(model, p),
        "finetune": lambda p: attnyolo.finetune(p, "se", data=data, print_report=False),
        "cli transfer": lambda p: _cli(["transfer", "yolov8n.yaml", str(p), "-o", str(root / "out.pt")]),
        "cli finetune": lambda p: _cli(["finetune", str(p), "se", "--data", data]),
    }
    results: dict = {}
    for name, (path, marker, _) in files.items():
        for loader, load in loaders.items():
            if loader == "load_safetensors_model" and path.suffix != ".safetensors":
                continue
            row = {"error": None, "message": "", "rc": None}
            try:
                got = load(path)
                if loader.startswith("cli"):
                    row["rc"], row["message"] = got
            except Exception as e:  # noqa: BLE001 - the test reads the type and message
                row["error"], row["message"] = type(e).__name__, str(e)
            row["payload_ran"] = marker.exists()
            marker.unlink(missing_ok=True)  # so the next loader's result is its own
            results.setdefault(name, {})[loader] = row
    listed = {name: [str(p), str(m), refused] for name, (p, m, refused) in files.items()}
    return {"debug": __debug__, "files": listed, "results": results}
