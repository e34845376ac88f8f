"""Plugging the zoo into Ultralytics: name resolution, one documented hook, and model building.

How Ultralytics finds a module: ``ultralytics.nn.tasks.parse_model`` reads each YAML row ``[from, n, module,
args]`` and looks the module name up with ``globals()[module]`` in ``ultralytics.nn.tasks``. :func:`register`
therefore sets one adapter class per zoo entry as an attribute of that module, named ``ay_<name>``
(``ay_cbam``), a prefix no Ultralytics or torch class uses (Ultralytics has its own ``CBAM``, ``PSA``,
``Attention``...).

The one hook, and why: for a module it does not know, parse_model passes the row's ``args`` unchanged, so an
attention cannot learn its input channels from ``args`` alone; the YAML would have to carry a channel count
per scale, which is the bug this package removes. parse_model does evaluate a string argument that names
one of its local variables (``args[j] = locals()[a]``: that is how ``nc`` becomes the class count). So
:func:`register` replaces ``ultralytics.nn.tasks.parse_model`` with a thin wrapper that, for attnyolo rows
only, prepends the strings ``"ch"`` and ``"f"`` to a copy of the row's args and calls the original; the
adapter receives Ultralytics' own channel list and the row's ``from`` and reads ``c1 = ch[f]``. Nothing of
parse_model is copied, no Ultralytics file is edited, the model's ``yaml`` keeps the clean rows, and
``DetectionModel`` & co. pick the wrapper up because they look ``parse_model`` up at call time.

Checkpoints: an adapter pickles as ``attnyolo.graph.ultralytics.ay_<name>``; this module creates that class
on first access (module ``__getattr__``), so unpickling a saved model imports attnyolo and finds it in a
fresh process. :func:`register` also adds the adapters and the zoo's classes to torch's safe globals, so
loading with ``ULTRALYTICS_SAFE_LOAD=1`` (``weights_only=True``) accepts them like Ultralytics' own layers.

Adapter row format: ``[-1, 1, ay_<name>, []]`` or ``[-1, 1, ay_<name>, [{hparam: value}]]``; an optional
second dict holds adapter options: ``[-1, 1, ay_cbam, [{}, {identity_start: false}]]``.

Identity start (on by default; option ``identity_start``): the adapter computes ``y = x + gamma * (attn(x) - x)``
with one learnable scalar ``gamma`` (state-dict key ``model.<i>.gamma``) initialised to 0, so an inserted layer
starts as an exact identity (``x + 0 * d == x`` bit for bit) and a model with transferred base weights reproduces
the base model's outputs and metrics before any training, in the neck and in the backbone. It is the ReZero
scheme (Bachlechner et al. 2020, https://arxiv.org/abs/2003.04887; the gamma of SAGAN): at the first step the
attention's own parameters get no gradient (it is scaled by ``gamma = 0``) but ``gamma`` does
(``dL/dgamma = <dL/dy, attn(x) - x>``), so ``gamma`` leaves 0 at the first optimiser step (with a non-zero
learning rate) and the attention learns from the next; how far it moves is logged by
:func:`attnyolo.finetune.add_gamma_logging`. ``gamma`` is a "weight" for Ultralytics' optimiser, so weight decay
pulls it gently back towards the identity. The adapter returns its output in its input's memory format (a few
modules return permuted views, and the next convolution would otherwise round differently).

Modules that already start as an exact identity by their paper's initialisation (a zero-initialised last layer
or gain; today ``gca`` (GC), ``sagan``, ``nonlocal``, ``nl``, ``gct``, ``cc``, ``danet``, ``gltr``, ``tmhsa``, ``stnl``)
get no gamma: wrapped, they would sit on a saddle point where neither moves (``gamma``'s gradient ``attn(x) - x``
is 0, and the module's gradients are scaled by ``gamma = 0``). The adapter finds them by running the new module
once on a fixed 8x8 probe and checking ``attn(x) == x`` exactly, so the rule needs no list and covers new zoo
entries. ``identity_start: false`` (``attnyolo.insert(..., identity_start=False)``) gives ``y = attn(x)``.

Rows written without options mean identity start, so the YAMLs stay clean. A pickled model saved before gamma
existed unpickles with ``gamma = None`` (its attention applied fully, as it was trained); a state dict that holds
all of a layer's attention tensors but no ``gamma`` (a model trained before gamma existed, loaded by Ultralytics'
key matching) sets ``gamma = 1``, i.e. the attention applied fully as it was trained.
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.modules import module as _torch_module

from attnyolo.attention._base import ScalesInput
from attnyolo.graph.errors import BuildError, ShapeError
from attnyolo.graph.layers import ROW_PREFIX, attention_name, is_yolov5_original, layers
from attnyolo.registry import available, describe

_SYMBOLS = ("ch", "f")  # parse_model locals handed to attnyolo rows: channel list so far, the row's from
_HOOK_MARK = "__attnyolo_hook__"


class AttentionLayer(nn.Module):
    """A zoo attention as one Ultralytics layer; subclasses ``ay_<name>`` fix the zoo name.

    ``forward(x) = x + gamma * (attn(x) - x)`` with ``gamma`` initialised to 0 (identity start, the default), or
    ``attn(x)`` when ``gamma`` is ``None`` (``identity_start: false``, or a module that starts as the identity by
    itself); see the module docstring. Computed as ``torch.lerp(x, attn(x), gamma)`` (one pass over the map, not
    three), and for modules that declare ``attn(x) = x * s`` (:class:`~attnyolo.attention._base.ScalesInput`) as
    ``x * lerp(1, s, gamma)``: gamma is applied to the small scale ``s`` and the map is read and written once.
    Both are exact at ``gamma = 0`` (``x + 0 * d``, ``x * 1``) and at ``gamma = 1`` (``attn(x)``).

    Args:
        ch: Ultralytics' list of output channels of the layers built so far (``[c_in]`` at layer 0),
            handed over by the parse_model hook; only ``ch[f]`` is read, the list is never kept.
        f: the row's ``from`` (an int: an attention reads one feature map).
        hparams: the zoo module's hyper-parameters (``{rd_ratio: 0.0625}``); defaults are the paper's.
        options: adapter options: ``identity_start`` (bool, default ``True``).

    Attributes:
        gamma: the learnable scalar gate of the identity start, or ``None``.
        start: ``"gamma"`` (identity start through ``gamma``), ``"module"`` (the module's own initialisation is
            the identity), or ``"off"``.
    """

    attention: ClassVar[str] = ""
    OPTIONS: ClassVar[frozenset] = frozenset({"identity_start"})

    def __init__(self, ch: Any = None, f: Any = None, hparams: Mapping | None = None, options: Mapping | None = None):
        super().__init__()
        name = type(self).__name__
        if not isinstance(ch, list):
            raise BuildError(
                f"{name} needs its input channels from Ultralytics: call attnyolo.register() (or import attnyolo) "
                "before Ultralytics builds a model that contains it"
            )
        if isinstance(f, list) or not isinstance(f, int):
            raise BuildError(f"{name} reads exactly one layer; its 'from' must be an int, got {f!r}")
        c1 = ch[f]
        if not isinstance(c1, int):
            raise ShapeError(f"{name} cannot follow a layer that outputs several tensors (channels {c1!r})")
        hparams, options = dict(hparams or {}), dict(options or {})
        unknown = sorted(set(options) - self.OPTIONS)
        if unknown:
            raise BuildError(f"{name}: unknown adapter option(s) {unknown}; known: {sorted(self.OPTIONS) or 'none'}")
        identity_start = options.get("identity_start", True)
        if not isinstance(identity_start, bool):
            raise BuildError(f"{name}: option identity_start must be true or false, got {identity_start!r}")
        self.channels = c1
        spec = describe(self.attention)
        self.attn = spec.create(c1, **hparams)
        if not identity_start:
            self.start = "off"
        elif _starts_as_identity(self.attn, c1, int(spec.frames(hparams) or 1)):
            self.start = "module"
        else:
            self.start = "gamma"
        self.gamma = nn.Parameter(torch.zeros(())) if self.start == "gamma" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gamma = self.gamma
        if gamma is None:
            return _same_layout(self.attn(x), x)
        attn = self.attn
        if isinstance(attn, ScalesInput) and not _has_hooks(attn):
            # attn(x) = x * s: gamma goes on the small s, x * (1 + gamma (s - 1)), one pass over the map
            # (attn's forward is not called, so a hook on attn itself takes the general path below)
            s = attn.attention_scale(x)
            return x * torch.lerp(s.new_ones(()), s, gamma)
        # x + gamma (y - x) in one fused pass; the result takes x's memory format whatever y's layout
        y = attn(x)
        if y.dtype != x.dtype:  # lerp wants one dtype; the arithmetic form promotes as before
            return x + gamma * (y - x)
        if not torch.is_grad_enabled() and not torch.jit.is_tracing() and _owned_like(y, x) and not _has_hooks(attn):
            # inference: y is a temporary of the module's, so write the result into it (on CPU every new
            # feature-map-sized buffer costs an mmap and its page faults); not while tracing: the TorchScript ONNX
            # exporter (YOLOv5's export.py, torch.onnx.export(dynamo=False)) cannot translate lerp(..., out=)
            return torch.lerp(x, y, gamma, out=y)
        return torch.lerp(x, y, gamma)

    def __setstate__(self, state: dict) -> None:
        # a model pickled before the identity start existed: no gamma, the attention applied fully
        super().__setstate__(state)
        self._parameters.setdefault("gamma", None)
        self.__dict__.setdefault("start", "off")

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors):
        key = prefix + "gamma"
        attn_keys = [prefix + k for k in self.state_dict() if k.startswith("attn.")]
        from_ungated = (
            self.gamma is not None
            and key not in state_dict
            and bool(attn_keys)
            and all(k in state_dict for k in attn_keys)
        )
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors)
        if from_ungated:  # trained before gamma existed, i.e. with the attention applied fully: gamma = 1
            with torch.no_grad():
                self.gamma.fill_(1.0)
            if key in missing_keys:
                missing_keys.remove(key)

    def extra_repr(self) -> str:
        return f"{self.attention!r}, channels={self.channels}, start={self.start!r}"


def _owned_like(y: torch.Tensor, x: torch.Tensor) -> bool:
    """``y`` can take the result in place: same shape, dtype and layout as ``x``, and no memory shared with it."""
    return (
        y.shape == x.shape
        and y.dtype == x.dtype
        and y.stride() == x.stride()
        and y.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
    )


def _has_hooks(module: nn.Module) -> bool:
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or _torch_module._global_forward_hooks
        or _torch_module._global_forward_pre_hooks
    )


def _same_layout(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``y`` in ``x``'s memory format. A few modules return permuted views (sagan, detr, tam); the next conv would
    then take another kernel path and round differently, so an identity start would no longer be bit-exact."""
    if y.stride() == x.stride() or y.dim() != 4:
        return y
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return y.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _starts_as_identity(module: nn.Module, channels: int, batch: int) -> bool:
    """True when ``module`` maps a fixed random 8x8 probe exactly to itself (its own identity initialisation)."""
    x = torch.randn(batch, channels, 8, 8, generator=torch.Generator().manual_seed(0), device="cpu")  # own RNG
    x = x.to(next(module.parameters(), x).device)
    training = module.training
    try:
        with torch.no_grad():
            y = module.eval()(x)
    except Exception:  # noqa: BLE001 - a module that cannot run the probe is not known to be the identity
        return False
    finally:
        module.train(training)
    return isinstance(y, torch.Tensor) and y.shape == x.shape and torch.equal(y, x)


_ADAPTERS: dict[str, type[AttentionLayer]] = {}
_SAFE: set[type] = set()  # classes already given to torch.serialization.add_safe_globals


def class_name(attention: str) -> str:
    """Python/YAML name of the adapter of zoo entry ``attention`` (``"cbam"`` -> ``"ay_cbam"``)."""
    name = ROW_PREFIX + re.sub(r"\W", "_", attention)
    if not name.isidentifier():
        raise BuildError(f"zoo name {attention!r} does not make a valid adapter name")
    return name


def adapter_class(attention: str) -> type[AttentionLayer]:
    """The adapter class ``ay_<attention>``, created once, importable as this module's attribute."""
    spec = describe(attention)  # unknown names raise with the closest names
    name = class_name(spec.name)
    cls = _ADAPTERS.get(name)
    if cls is None:
        doc = f"Ultralytics layer for attnyolo's {spec.name!r} ({spec.paper}, {spec.year}); see AttentionLayer."
        cls = type(name, (AttentionLayer,), {"attention": spec.name, "__module__": __name__, "__doc__": doc})
        cls.__qualname__ = name
        _ADAPTERS[name] = cls
        setattr(sys.modules[__name__], name, cls)  # pickle finds classes by module attribute
    return cls


def __getattr__(name: str) -> Any:
    # Unpickling a checkpoint asks this module for ay_<name> before anything registered it.
    if name.startswith(ROW_PREFIX):
        for attention in available():
            if class_name(attention) == name:
                return adapter_class(attention)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _tasks():
    import ultralytics.nn.tasks as tasks

    return tasks


def _with_channel_symbols(d: Mapping) -> dict:
    """A copy of model dict ``d`` whose attnyolo rows get ``"ch", "f"`` prepended to their args."""
    tasks = _tasks()
    out = dict(d)
    for section in ("backbone", "head"):
        rows = []
        for row in d.get(section) or []:
            attention = attention_name(row[2]) if isinstance(row, (list, tuple)) and len(row) == 4 else None
            if attention is not None:
                cls = adapter_class(attention)
                setattr(tasks, row[2], cls)  # a name registered after register() still resolves
                row = [row[0], row[1], row[2], [*_SYMBOLS, *copy.deepcopy(row[3])]]
            rows.append(row)
        out[section] = rows
    return out


def _wrap(original):
    def parse_model(d, ch, verbose=True):
        """attnyolo's hook around Ultralytics' parse_model: hands attnyolo rows their input channels
        (see :mod:`attnyolo.graph.ultralytics`), then calls the original unchanged; block rows with an
        attention inside (:mod:`attnyolo.graph.inside`) are built plain, then patched."""
        from attnyolo.graph.inside import without_inside

        d, plan = without_inside(d)
        net, save = original(_with_channel_symbols(d), ch, verbose)
        if plan:
            from attnyolo.graph.inside_modules import patch_model

            patch_model(net, plan)
        return net, save

    parse_model.__wrapped__ = original
    setattr(parse_model, _HOOK_MARK, True)
    return parse_model


def _zoo_classes() -> list[type]:
    # every nn.Module class the zoo defines (modules' parts included), for torch's weights_only allow-list
    out = []
    for name, module in list(sys.modules.items()):
        if name == "attnyolo.attention" or name.startswith("attnyolo.attention."):
            out += [
                v
                for v in vars(module).values()
                if isinstance(v, type) and issubclass(v, nn.Module) and v.__module__ == name
            ]
    return out


def _moved_zoo_classes() -> list[tuple[type, str]]:
    # zoo classes re-exported by another zoo file than their own (SoftmaxGate moved from self_attention to
    # _attention): a checkpoint pickled before the move names them by the old path, which weights_only must accept
    out = []
    for name, module in list(sys.modules.items()):
        if name == "attnyolo.attention" or name.startswith("attnyolo.attention."):
            for attr, v in vars(module).items():
                if (
                    isinstance(v, type)
                    and issubclass(v, nn.Module)
                    and v.__module__ != name
                    and v.__module__.startswith("attnyolo.attention.")
                ):
                    out.append((v, f"{name}.{attr}"))
    return out


def register() -> None:
    """Make every zoo entry buildable by Ultralytics (idempotent; ``import attnyolo`` may call it).

    Sets ``ultralytics.nn.tasks.ay_<name>`` for each zoo name, installs the parse_model hook once, and adds
    the adapter and zoo classes to torch's safe globals for ``weights_only`` checkpoint loading.
    """
    tasks = _tasks()
    for attention in available():
        cls = adapter_class(attention)
        setattr(tasks, cls.__name__, cls)
    if not getattr(tasks.parse_model, _HOOK_MARK, False):
        tasks.parse_model = _wrap(tasks.parse_model)
    if hasattr(torch.serialization, "add_safe_globals"):
        from attnyolo.graph.inside_modules import CLASSES as inside_classes

        new = [
            c
            for c in (AttentionLayer, *_ADAPTERS.values(), *_zoo_classes(), *_moved_zoo_classes(), *inside_classes)
            if c not in _SAFE
        ]
        _SAFE.update(new)
        torch.serialization.add_safe_globals(new)


def is_registered() -> bool:
    """True once :func:`register` has installed the parse_model hook in this process."""
    return "ultralytics.nn.tasks" in sys.modules and bool(getattr(_tasks().parse_model, _HOOK_MARK, False))


# The model class for a YAML: a few heads need their own class (as YOLO() picks them), else the task's.
HEAD_MODEL_CLASS = {
    "RTDETRDecoder": "RTDETRDetectionModel",
    "WorldDetect": "WorldModel",
    "YOLOEDetect": "YOLOEModel",
    "YOLOESegment": "YOLOESegModel",
    "YOLOESegment26": "YOLOESegModel",
}
TASK_MODEL_CLASS = {
    "detect": "DetectionModel",
    "segment": "SegmentationModel",
    "pose": "PoseModel",
    "obb": "OBBModel",
    "classify": "ClassificationModel",
    "semantic": "SemanticSegmentationModel",
    "depth": "DepthModel",
}


def model_class(cfg: Mapping) -> type[nn.Module]:
    """The Ultralytics model class that builds ``cfg`` (DetectionModel, SegmentationModel, ...)."""
    tasks = _tasks()
    head = layers(cfg)[-1].module
    name = HEAD_MODEL_CLASS.get(head) or TASK_MODEL_CLASS.get(tasks.guess_model_task(dict(cfg)) or "detect")
    return getattr(tasks, name)


def build(cfg: Any, nc: int | None = None, scale: str | None = None, verbose: bool = False, ch: int = 3) -> nn.Module:
    """Build the task's Ultralytics model (``DetectionModel``, ``SegmentationModel``...) from a model YAML.

    Args:
        cfg: a path, a bare Ultralytics name or a dict (an edited one from :func:`attnyolo.insert`).
        nc: number of classes (overrides the YAML's ``nc``).
        scale: ``"n"``, ``"s"``... (default: the YAML's ``scale``, else its first scale).
        verbose: print Ultralytics' layer table.
        ch: input channels.

    Raises:
        GraphError: a YAML that is not a model, names what is not a layer, or an activation or argument that is
            an expression (:func:`attnyolo.graph.names.check_buildable`); ``nc`` that is not an integer >= 1.
    """
    from attnyolo.graph.channels import resolve_scale
    from attnyolo.graph.checks import check_attention_rows
    from attnyolo.graph.names import check_buildable
    from attnyolo.graph.yaml_io import load

    d = load(cfg, scale=scale)
    classes = nc if nc is not None else d.get("nc")
    if classes is not None and (isinstance(classes, bool) or not isinstance(classes, int) or classes < 1):
        where = "nc" if nc is not None else "the YAML's nc"
        raise BuildError(f"{where} (number of classes) must be an integer >= 1, got {classes!r}")
    if is_yolov5_original(d):
        raise BuildError(
            "this is the original YOLOv5 format (anchors:, Detect [nc, anchors]): Ultralytics builds only its YOLOv5u "
            "YAMLs (yolov5nu.yaml...); attnyolo.build (attnyolo.hosts.build) builds it with YOLOv5's own Model"
        )
    register()
    check_buildable(d)
    sc = resolve_scale(d, scale)
    if sc.name:
        d["scale"] = sc.name  # explicit, so parse_model does not warn and guess
    check_attention_rows(d, scales=[sc.name or None], ch_in=ch)
    return model_class(d)(d, ch=ch, nc=nc, verbose=verbose)
