"""The host interface: what the grid runner, transfer and registration need from a detection codebase.

Two implementations: :class:`attnyolo.hosts.ultralytics.UltralyticsHost` (Ultralytics 8, today's default) and
:class:`attnyolo.hosts.yolov5.host.YOLOv5Host` (the original YOLOv5 v7.0); :func:`attnyolo.hosts.select.host_for`
picks one by the model YAML's format. The grid runner (``attnyolo.experiments.runner``) talks to a host through
:class:`GridHost`, this interface plus what one run of a grid needs (start model, training with the run's seed and
callbacks, per-image validation statistics, the trained model); its two implementations live beside the runner
(:mod:`attnyolo.experiments.run_hosts`), since they use the experiments' own modules (valstats, the callbacks).

Metrics from :meth:`Host.val` use one set of keys on both hosts, :data:`METRIC_KEYS`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from torch import nn

from attnyolo.errors import AttnYoloError

METRIC_KEYS = ("precision", "recall", "mAP50", "mAP50-95")
"""Keys of :meth:`Host.val`'s result on every host (box metrics over all classes)."""

PathLike = str | os.PathLike


class HostFormatError(AttnYoloError):
    """A model YAML or checkpoint of the other host (an original YOLOv5 one given to Ultralytics, or the reverse)."""


@runtime_checkable
class Host(Protocol):
    """A detection codebase attnyolo builds, loads, trains, validates and exports with."""

    name: str
    """``"ultralytics"`` or ``"yolov5"``: the report names the host."""

    def builds(self, cfg: Mapping) -> bool:
        """True when this host builds model YAML dict ``cfg`` (its format)."""

    def build(self, cfg: Any, nc: int | None = None, scale: str | None = None) -> nn.Module:
        """The model of a (possibly edited) model YAML, zoo registered, with fresh weights."""

    def load_checkpoint(self, path: PathLike, *, trust: bool = False) -> dict:
        """A checkpoint of this host, loaded without running code from it (unless ``trust``)."""

    def save_checkpoint(self, model: nn.Module, path: PathLike, meta: Mapping[str, Any] | None = None) -> Path:
        """Write ``model`` in the checkpoint format this host's own trainer loads as start weights."""

    def train(self, *, weights: PathLike, data: PathLike, project: PathLike, name: str, **options: Any) -> Path:
        """Train from start checkpoint ``weights`` with the host's own trainer; returns the run folder (which holds
        ``weights/best.pt``)."""

    def val(self, *, weights: PathLike, data: PathLike, **options: Any) -> dict[str, float]:
        """Validate ``weights``; returns :data:`METRIC_KEYS`."""

    def export(self, *, weights: PathLike, format: str = "onnx", **options: Any) -> Path:
        """Export ``weights`` with the host's own exporter; returns the file written."""


@dataclass
class TrainedRun:
    """What a host's training of one grid run left behind, for the runner's measurements and the store's row.

    Attributes:
        save_dir: the run folder (``weights/best.pt`` inside).
        train_args: the training arguments the host recorded (Ultralytics' ``args.yaml``, YOLOv5's ``opt.yaml``).
        imgsz: the training image size (validation, engagement and costs use it).
        val_settings: how the host's trainer validated ``best.pt`` at the end of training, as arguments of
            :meth:`GridHost.per_image_stats` (the stored numbers are that validation's).
        final_map50_95: mAP50-95 of the trainer's own final validation of ``best.pt`` (``None`` when it did not run).
        epochs: one row per epoch (the host's ``results.csv``; the report reads ``metrics/mAP50-95(B)``).
        seconds: training time by the host's own clock, summed over resumes; ``None``: the runner's wall clock.
    """

    save_dir: Path
    train_args: dict
    imgsz: int
    val_settings: dict
    final_map50_95: float | None = None
    epochs: list[dict] = field(default_factory=list)
    seconds: float | None = None

    @property
    def best(self) -> Path:
        return self.save_dir / "weights" / "best.pt"


@runtime_checkable
class GridHost(Host, Protocol):
    """What one run of an ablation grid needs from a host, beyond :class:`Host` (the runner uses nothing else)."""

    def load_base(self, weights: PathLike | None, model: Any, *, trust: bool = False) -> Any:
        """The grid's base (:class:`attnyolo.finetune.start.Base`): checkpoint ``weights`` or model YAML ``model``;
        a file of the other host is refused with one line naming it."""

    def check_recipe(self, recipe: Mapping[str, Any]) -> None:
        """Refuse training arguments this host's trainer does not know (one line naming the key)."""

    def save_start(self, model: nn.Module, path: PathLike, data: PathLike, meta: Mapping[str, Any]) -> Path:
        """The run's start model in the checkpoint format this host's trainer starts from."""

    def resumable(self, last: Path) -> int | None:
        """The epoch ``last.pt`` finished when the run can continue from it, else ``None`` (start again)."""

    def train_run(
        self,
        start: Any,
        start_pt: Path | None,
        *,
        data: PathLike,
        seed: int,
        project: Path,
        name: str,
        recipe: Mapping[str, Any],
        schedule: Mapping[str, Any],
        on_epoch: Callable[[str, int, int], None] | None = None,
        resume_from: Path | None = None,
    ) -> TrainedRun:
        """Train one run with the host's own trainer and attnyolo's run callbacks (gamma log and group, start
        check), seeded by ``seed``, into ``project/name``; ``resume_from`` continues a killed run's ``last.pt``.
        ``on_epoch(name, epoch, epochs)`` after each epoch."""

    def per_image_stats(
        self, best: Path, data: PathLike, imgsz: int, settings: Mapping[str, Any]
    ) -> tuple[dict, dict[str, Any]]:
        """Validate ``best`` as the trainer did (``settings``): the arrays of ``val_stats.npz``
        (:mod:`attnyolo.experiments.valstats`) and the metrics :data:`METRIC_KEYS` plus ``per_class`` (class name ->
        AP50-95)."""

    def load_trained(self, best: Path) -> nn.Module:
        """The trained model of ``best`` (float, eval mode), for engagement and costs."""

    def reproduce_command(self, best: PathLike, data: PathLike, imgsz: int, settings: Mapping[str, Any]) -> str:
        """The one command that prints a run's stored metrics again from its ``best.pt``."""

    def versions(self) -> dict[str, str]:
        """The host's own version entries for the store (none for Ultralytics: the runner records it always)."""
