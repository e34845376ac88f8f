"""Experiments: ablation grids (:func:`ablate`), their results store, executors and cost measurements.

Modules: :mod:`.grid` (grid spec and validation), :mod:`.store` (SQLite results database), :mod:`.runner` (one
run), :mod:`.executors` (local, processes, Ray), :mod:`.costs` (parameters, FLOPs, latency), :mod:`.valstats`
(per-image validation statistics), :mod:`.progress`, :mod:`.driver` (the grid driver, :func:`ablate`).
"""

from attnyolo.experiments.driver import ablate
from attnyolo.experiments.store import ResultsStore

__all__ = ["ResultsStore", "ablate"]
