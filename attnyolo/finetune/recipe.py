"""Fine-tune recipes under which an inserted attention engages (issue 21, item 2).

With today's demo recipe (2 epochs, AdamW lr0 1e-4, an optimiser step every 4 batches, gamma at lr0 x 10) an
identity-start attention barely leaves the identity: about 6 optimiser steps move gamma by ~0.003 and the layer
changes its feature map by < 0.3 %. Two knobs fix that without touching the base's own learning rate:

- :class:`NewTensorOptimiser`: every tensor that is *new* in the edited model (the attention's own weights, not
  only gamma: everything that is not a transfer target) goes into an optimiser group ``new`` at ``lr0 x k``, so
  the attention learns at the rate of a freshly initialised layer while the transferred weights keep the small
  rate that protects them. The gammas can get their own factor (``gamma_lr_scale``).
- :class:`AttentionWarmup`: the first ``epochs`` epochs train only the new tensors (the transferred tensors are
  frozen and their BatchNorm layers keep their running statistics, as :class:`attnyolo.finetune.FreezeTransferred`
  does), with an optimiser step on every batch (Ultralytics accumulates to ``nbs=64`` by default: 3 steps per
  epoch on the embedded data); then the joint fine-tune at the recipe's own cadence. This is linear probing then
  fine-tuning (LP-FT, Kumar et al. 2022, https://arxiv.org/abs/2202.10054) with the new layers as the "probe":
  the new tensors reach a useful state before the base's features see their gradients, so the joint phase does
  not have to undo early noisy updates of the base. A model with nothing new (the control) goes through the
  same schedule: its warm-up epochs change nothing (no tensor trains, BatchNorm statistics stay) and its joint
  phase starts at the same epoch with the same learning rate, so the comparison stays fair.

:class:`Recipe` holds both knobs and registers them on an Ultralytics ``YOLO`` object (:meth:`Recipe.install`);
``attnyolo.finetune`` passes its ``recipe=`` through. The identity start is untouched: nothing here changes a
tensor before the first optimiser step.

**The default** (:func:`default_recipe`; ``attnyolo finetune``, ``attnyolo.finetune()``, new fine-tuning grids of
``attnyolo ablate`` and ``attnyolo demo``): new tensors at lr0 x 100, gamma at lr0 x 300 (limited to 1e-2 / 3e-2),
and a 1-epoch warm-up when the run has at least 2 epochs. Measured (docs/results/finetune_recipes.md): with gamma at
x 100 SimAM, which has no weights of its own, stays below r = 0.05 (Adam moves gamma by about its learning rate per
step, ~13 warm-up steps: |gamma| <= 0.14, and SimAM changes its input by ~20 %); at x 300 every measured variant
engages with the base unharmed. ``"none"`` opts out.

**gamma outside [0, 1] is allowed, on purpose.** gamma starts at 0, on the edge of [0, 1], and on the embedded data
2 of the 3 neck layers first move below 0 on both seeds: a clamp (or a sigmoid) would hold those layers at the
identity, i.e. switch engagement off for them. A negative gamma is a legitimate function, not a fault: for a gate
``attn(x) = x * s``, ``y = x * (1 + gamma * (s - 1))``, so gamma < 0 amplifies what the attention scores low (an
inverted gate), and gamma > 1 sharpens the gate. Neither harmed mAP in the measurements (runs with |gamma| ~ 1.4
are within 0.002 of their control). What keeps gamma moderate is its learning rate (x 300: |gamma| ~ 0.4 after the
warm-up), not a constraint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from attnyolo.errors import AttnYoloError
from attnyolo.finetune.callbacks import FreezeTransferred, take_from_groups
from attnyolo.graph.adapter import AttentionLayer
from attnyolo.models import unwrap

NEW_GROUP = "new"
"""``param_group`` name of the new tensors' optimiser group."""


class RecipeError(AttnYoloError):
    """A recipe option that cannot be used: a negative learning-rate factor, a warm-up longer than the run."""


def _positive_factor(name: str, value: Any, what: str = "a learning-rate factor > 0 (e.g. 10 or 100)") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value != value:
        raise RecipeError(f"{name} must be {what}, got {value!r}")
    return float(value)


def _positive_rate(name: str, value: Any) -> float | None:
    return _positive_factor(name, value, "a learning rate > 0 (e.g. 0.01)")


def scaled_lr(base: float, scale: float, max_lr: float | None) -> float:
    """``base x scale``, at most ``max_lr`` but never below ``base``: a factor lifts a small fine-tune rate up to a
    fresh layer's, it never slows the new tensors below the base's own rate."""
    return base * scale if max_lr is None else max(base, min(base * scale, max_lr))


def gamma_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The identity-start gammas of every inserted layer (inserted rows and attention inside blocks)."""
    return [m.gamma for m in unwrap(model).modules() if isinstance(m, AttentionLayer) and m.gamma is not None]


def new_parameters(model: nn.Module, transferred: Iterable[str]) -> list[tuple[str, nn.Parameter]]:
    """``(key, parameter)`` of every trainable parameter whose state-dict key is not in ``transferred``."""
    keys = set(transferred)
    return [(k, p) for k, p in unwrap(model).named_parameters() if k not in keys]


def base_lr(optimizer: torch.optim.Optimizer, lr0: float) -> float:
    """The learning rate Ultralytics built the optimiser with: ``lr0``, or the rate ``optimizer=auto`` chose itself
    (it ignores ``lr0``), read from the first group that is not gamma's or the new tensors' (``lr0`` if none)."""
    for group in optimizer.param_groups:
        if group.get("param_group") not in ("gamma", NEW_GROUP):
            return float(group["lr"])
    return lr0


class NewTensorOptimiser:
    """Trainer callback: the new tensors in an optimiser group ``new`` at ``lr0 x lr_scale``, no weight decay.

    ``lr0`` here is the rate Ultralytics built the optimiser with (:func:`base_lr`): the ``lr0`` argument, or the
    rate ``optimizer=auto`` picked, so that the factors stay relative to the base's actual rate.

    Registered after :class:`attnyolo.finetune.GammaOptimiser` (it wraps the trainer's ``build_optimizer`` the same
    way, so it regroups after gamma's group exists). The gammas stay in their own group; ``gamma_lr_scale`` (if
    given) sets that group's rate to ``lr0 x gamma_lr_scale``. No weight decay on the new tensors: decay pulls an
    attention back towards its random start (and gamma towards the identity), which a short fine-tune cannot
    afford; decoupled decay at these rates is negligible anyway.

    Args:
        transferred: state-dict keys of the tensors that came from the base (``report.transferred`` targets).
        lr_scale: factor on ``lr0`` for the new non-gamma tensors (``None``: they stay in Ultralytics' groups).
        gamma_lr_scale: factor on ``lr0`` for the gammas (``None``: GammaOptimiser's).
        max_lr, gamma_max_lr: the most ``lr0 x lr_scale`` / ``lr0 x gamma_lr_scale`` may reach (``None``: no limit;
            never below ``lr0``, see :func:`scaled_lr`).
    """

    def __init__(
        self,
        transferred: Iterable[str],
        lr_scale: float | None,
        gamma_lr_scale: float | None = None,
        max_lr: float | None = None,
        gamma_max_lr: float | None = None,
    ):
        self.transferred = set(transferred)
        self.lr_scale = _positive_factor("new_lr_scale", lr_scale)
        self.gamma_lr_scale = _positive_factor("gamma_lr_scale", gamma_lr_scale)
        self.max_lr = _positive_rate("new_max_lr", max_lr)
        self.gamma_max_lr = _positive_rate("gamma_max_lr", gamma_max_lr)

    def on_pretrain_routine_start(self, trainer: Any) -> None:
        original = trainer.build_optimizer

        def build_optimizer(*args: Any, **kwargs: Any) -> torch.optim.Optimizer:
            optimizer = original(*args, **kwargs)
            self.regroup(optimizer, trainer.model, base_lr(optimizer, float(trainer.args.lr0)))
            return optimizer

        trainer.build_optimizer = build_optimizer

    def regroup(self, optimizer: torch.optim.Optimizer, model: nn.Module, lr0: float) -> None:
        gamma_ids = {id(g) for g in gamma_parameters(model)}
        if self.gamma_lr_scale is not None:
            for group in optimizer.param_groups:
                if group.get("param_group") == "gamma":
                    group["lr"] = scaled_lr(lr0, self.gamma_lr_scale, self.gamma_max_lr)
        if self.lr_scale is None:
            return
        new = [p for _, p in new_parameters(model, self.transferred) if id(p) not in gamma_ids]
        template = take_from_groups(optimizer, new)
        if template is None:  # nothing new besides gamma (the control, or gamma-only modules)
            return
        settings = {k: v for k, v in template.items() if k not in ("params", "use_muon", "initial_lr")}
        settings |= {"weight_decay": 0.0, "lr": scaled_lr(lr0, self.lr_scale, self.max_lr), "param_group": NEW_GROUP}
        optimizer.add_param_group({"params": new, **settings})


class AttentionWarmup(FreezeTransferred):
    """Trainer callbacks: the first ``epochs`` epochs train only the new tensors, one optimiser step per batch.

    Freezing and BatchNorm as :class:`attnyolo.finetune.FreezeTransferred` (transferred parameters get no
    gradient; BatchNorm layers whose statistics were transferred stay in eval mode, so their running statistics do
    not move). During those epochs the trainer's ``accumulate`` is 1 (a step per batch); from epoch ``epochs`` on
    it is the recipe's again. A model with no trainable tensor left during the warm-up (the control: everything
    was transferred) gets a zero-valued term ``0 * anchor`` on its loss so that Ultralytics' backward pass runs:
    the loss value is unchanged, no model parameter gets a gradient, and nothing moves.
    """

    def __init__(self, keys: Iterable[str], epochs: int) -> None:
        super().__init__(set(keys), epochs)
        self._accumulate: int | None = None
        self._anchor = nn.Parameter(torch.zeros(()))
        self._hook: Any = None

    def on_train_epoch_start(self, trainer: Any) -> None:
        super().on_train_epoch_start(trainer)
        if self.frozen:
            if self._accumulate is None:
                self._accumulate = int(trainer.accumulate)
            trainer.accumulate = 1
        elif self._accumulate is not None:
            trainer.accumulate = self._accumulate
        net = unwrap(trainer.model)
        nothing_trains = not any(p.requires_grad for p in net.parameters())
        if self.frozen and nothing_trains and self._hook is None:
            self._hook = net.register_forward_hook(self._keep_graph)
        elif not self.frozen and self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _keep_graph(self, module: nn.Module, args: Any, output: Any) -> Any:
        # training forward of a DetectionModel on a batch dict returns (loss, loss_items); inference is untouched
        if isinstance(output, tuple) and len(output) == 2 and isinstance(output[0], torch.Tensor):
            loss = output[0]
            if not loss.requires_grad:
                return (loss + 0.0 * self._anchor.to(loss.dtype), output[1])
        return output


@dataclass(frozen=True)
class Recipe:
    """The attention-specific part of a fine-tune recipe (Ultralytics' own arguments stay in ``yolo_args``).

    Attributes:
        warmup_epochs: attention warm-up (:class:`AttentionWarmup`): epochs with the transferred tensors frozen
            and an optimiser step per batch (0: none). At most the run's ``epochs``.
        new_lr_scale: learning-rate factor on ``lr0`` for the new non-gamma tensors (:class:`NewTensorOptimiser`;
            ``None``: Ultralytics' groups at ``lr0``).
        gamma_lr_scale: learning-rate factor on ``lr0`` for the gammas (``None``: GammaOptimiser's default).
        new_max_lr, gamma_max_lr: the highest rate the factors may give the new tensors / the gammas (``None``: no
            limit). The factors were measured at AdamW lr0 1e-4; the limits keep the rates they give there
            (1e-2, 3e-2) when ``lr0`` is larger (Ultralytics' ``optimizer=auto`` picks 1.4e-3 for 3 classes, SGD
            0.01 on large data: x 100 / x 300 would be 0.14-3), where a fresh layer needs no lift anyway.
    """

    warmup_epochs: int = 0
    new_lr_scale: float | None = None
    gamma_lr_scale: float | None = None
    new_max_lr: float | None = None
    gamma_max_lr: float | None = None

    def __post_init__(self) -> None:
        w = self.warmup_epochs
        if isinstance(w, bool) or not isinstance(w, int) or w < 0:
            raise RecipeError(f"warmup_epochs must be a whole number of epochs >= 0, got {w!r}")
        _positive_factor("new_lr_scale", self.new_lr_scale)
        _positive_factor("gamma_lr_scale", self.gamma_lr_scale)
        _positive_rate("new_max_lr", self.new_max_lr)
        _positive_rate("gamma_max_lr", self.gamma_max_lr)

    def check(self, epochs: Any, freeze_epochs: int = 0) -> None:
        """Refuse a warm-up longer than the run (``epochs``: the run's Ultralytics ``epochs``) or next to another
        frozen phase (``freeze_epochs``: two freezers of the same tensors would leave them frozen for good)."""
        if isinstance(epochs, int) and not isinstance(epochs, bool) and self.warmup_epochs > epochs:
            raise RecipeError(
                f"warmup_epochs={self.warmup_epochs} is longer than the run (epochs={epochs}); "
                f"use at most {epochs} (equal: the whole run trains only the new tensors)"
            )
        if self.warmup_epochs and freeze_epochs:
            raise RecipeError(
                f"warmup_epochs={self.warmup_epochs} and freeze_epochs={freeze_epochs} are two frozen phases; "
                "give one of them (the other 0)"
            )

    def as_dict(self) -> dict[str, Any]:
        """The options that are set, as a grid's ``attention_recipe`` stores them (``Recipe(**d) == self``)."""
        return {k: getattr(self, k) for k in RECIPE_FIELDS if getattr(self, k) not in (None, 0)}

    def install(self, yolo: Any, transferred: Iterable[str], epochs: Any = None) -> None:
        """Register the recipe's callbacks on an Ultralytics ``YOLO`` object, after ``add_gamma_optimiser``.

        Args:
            yolo: the ``YOLO`` object about to ``train``.
            transferred: state-dict keys of the tensors transferred from the base (all keys for the control).
            epochs: the run's epochs, to refuse a warm-up longer than the run (``None``: Ultralytics' default 100).
        """
        self.check(100 if epochs is None else epochs)
        keys = set(transferred)
        if self.new_lr_scale is not None or self.gamma_lr_scale is not None:  # the limits act on the factors only
            grouping = NewTensorOptimiser(
                keys, self.new_lr_scale, self.gamma_lr_scale, self.new_max_lr, self.gamma_max_lr
            )
            yolo.add_callback("on_pretrain_routine_start", grouping.on_pretrain_routine_start)
        if self.warmup_epochs:
            warmup = AttentionWarmup(keys, self.warmup_epochs)
            yolo.add_callback("on_train_epoch_start", warmup.on_train_epoch_start)
            yolo.add_callback("on_train_batch_start", warmup.on_train_batch_start)


RECIPE_FIELDS = ("warmup_epochs", "new_lr_scale", "gamma_lr_scale", "new_max_lr", "gamma_max_lr")
"""The options of :class:`Recipe`, as a grid's ``attention_recipe`` names them."""

DEFAULT_WARMUP_EPOCHS = 1
DEFAULT_NEW_LR_SCALE = 100.0
DEFAULT_GAMMA_LR_SCALE = 300.0
DEFAULT_NEW_MAX_LR = 1e-2
DEFAULT_GAMMA_MAX_LR = 3e-2
"""The default recipe's knobs (measured in docs/results/finetune_recipes.md: with gamma at lr0 x 100 SimAM, whose
only new tensor is gamma, stayed below r = 0.05; at x 300 every measured variant engages, mAP unharmed). The limits
are the rates the factors give at the measured lr0 1e-4: a larger lr0 gets no more than that."""

RECIPE_DEFAULT = "default"
RECIPE_NONE = "none"
RECIPE_MODES = (RECIPE_DEFAULT, RECIPE_NONE)
"""What ``attention_recipe`` / ``--attention-recipe`` accept besides a mapping of :data:`RECIPE_FIELDS`."""


def default_recipe(epochs: Any = None, freeze_epochs: int = 0) -> Recipe:
    """The recipe ``attnyolo finetune``, ``attnyolo.finetune()`` and fine-tuning grids (``weights:``) use unless
    told otherwise: new tensors at lr0 x 100, gamma at lr0 x 300, and a one-epoch attention warm-up when the run
    has room for it.

    The factors are limited to the rates they give at the measured lr0 1e-4 (new tensors 1e-2, gamma 3e-2; never
    below the base's own rate), so a larger ``lr0`` (Ultralytics' defaults) gets no wild rate.

    The warm-up is 1 epoch only when the run has at least 2 (``epochs`` ``None``: Ultralytics' default 100): a
    1-epoch run that is all warm-up would never train the base, a silent change of what ``epochs=1`` means; it
    keeps the learning-rate factors. With ``freeze_epochs`` (the user's own frozen phase) there is no warm-up
    either: one frozen phase at a time.
    """
    room = epochs is None or (isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 2)
    warmup = DEFAULT_WARMUP_EPOCHS if room and not freeze_epochs else 0
    return Recipe(warmup, DEFAULT_NEW_LR_SCALE, DEFAULT_GAMMA_LR_SCALE, DEFAULT_NEW_MAX_LR, DEFAULT_GAMMA_MAX_LR)


def recipe_from(value: Any, epochs: Any = None, freeze_epochs: int = 0) -> Recipe | None:
    """The :class:`Recipe` a ``recipe=`` / ``attention_recipe`` value asks for, checked against the run.

    Args:
        value: ``"default"`` (:func:`default_recipe`), ``"none"`` or ``None`` (no recipe: Ultralytics' groups and
            cadence, gamma at GammaOptimiser's rate), a :class:`Recipe`, or a mapping of :data:`RECIPE_FIELDS`.
        epochs: the run's epochs (``None``: Ultralytics' default 100).
        freeze_epochs: the run's own frozen phase (a warm-up next to it is refused).

    Raises:
        RecipeError: any other value, unknown keys, bad factors, a warm-up longer than the run or next to
            ``freeze_epochs``; one line naming the value and what is allowed.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == RECIPE_NONE):
        return None
    if isinstance(value, str) and value.strip().lower() == RECIPE_DEFAULT:
        return default_recipe(epochs, freeze_epochs)
    if isinstance(value, Mapping):
        unknown = set(value) - set(RECIPE_FIELDS)
        if unknown:
            raise RecipeError(f"unknown recipe keys {sorted(unknown)} (allowed: {', '.join(RECIPE_FIELDS)})")
        value = Recipe(**value)
    if not isinstance(value, Recipe):
        raise RecipeError(
            f"attention recipe must be {' or '.join(RECIPE_MODES)}, a mapping of {', '.join(RECIPE_FIELDS)} "
            f"or a Recipe, got {value!r}"
        )
    value.check(100 if epochs is None else epochs, freeze_epochs)
    return value


def recipe_with(mode: str, epochs: Any = None, freeze_epochs: int = 0, **options: Any) -> Recipe | None:
    """The recipe of the CLI flags: ``--attention-recipe MODE`` with ``--attention-warmup`` / ``--new-lr-scale`` /
    ``--gamma-lr-scale`` (``options``: those given, ``None`` for not given) replacing the default's knobs."""
    given = {k: v for k, v in options.items() if v is not None}
    if isinstance(mode, str) and mode.strip().lower() == RECIPE_NONE and given:
        flags = ", ".join("--" + k.replace("_", "-").replace("warmup-epochs", "attention-warmup") for k in given)
        raise RecipeError(f"--attention-recipe none takes no {flags} (none: no attention recipe at all)")
    recipe = recipe_from(mode, epochs, freeze_epochs)
    if recipe is None or not given:
        return recipe
    return recipe_from({**recipe.as_dict(), **given}, epochs, freeze_epochs)
