"""Suite-wide set-up: one torch thread per xdist worker (2 workers on 2 cores), quiet Ultralytics, and
reproducible property tests in CI (Hypothesis profile ``ci``, chosen when ``CI`` is set: derandomized, so every
CI run draws the same examples; locally the examples stay random and keep finding new cases).

Training is for tests marked ``slow`` only (``make test-fast`` runs ``-m "not slow"`` and must train nothing): in
any other test, its fixtures included, Ultralytics' trainer raises :class:`UnmarkedTraining` once it is set up,
and the test errors even if the code under test swallowed that exception. Training in a child process (a CLI
subprocess, a grid executor) is beyond this guard.
"""

import functools
import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

import attnyolo  # noqa: F401  (configures the offline runtime before any test imports Ultralytics)

# isort: split
from model_helpers import train_tiny  # imports Ultralytics: after attnyolo (tests/ is on sys.path: prepend mode)
from ultralytics.engine.trainer import BaseTrainer

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


class UnmarkedTraining(RuntimeError):
    """Raised by the trainer in a test that is not marked ``slow``."""


_running = {"item": None}  # the test whose set-up, call or tear-down runs now (one at a time per process)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _running["item"] = item
    try:
        return (yield)
    finally:
        _running["item"] = None


def _refuse_unmarked_training(setup_train):
    """Wrap ``BaseTrainer._setup_train``: set-up errors (bad data, bad arguments) surface as before; the first
    epoch, which would follow, is refused outside ``slow`` tests."""

    @functools.wraps(setup_train)
    def guarded(self, *args, **kwargs):
        result = setup_train(self, *args, **kwargs)
        item = _running["item"]
        if item is not None and item.get_closest_marker("slow") is None:
            item.stash[_TRAINED] = True
            raise UnmarkedTraining(f"this test trains: mark it slow (@pytest.mark.slow): {item.nodeid}")
        return result

    return guarded


_TRAINED = pytest.StashKey[bool]()
BaseTrainer._setup_train = _refuse_unmarked_training(BaseTrainer._setup_train)


@pytest.fixture(autouse=True)
def _fail_unmarked_training(request):
    """Error at tear-down when the trainer refused this test, even if the code under test caught the refusal."""
    yield
    if request.node.stash.get(_TRAINED, False):
        pytest.fail(f"this test trains: mark it slow (@pytest.mark.slow): {request.node.nodeid}", pytrace=False)


@pytest.fixture(scope="session")
def default_data():
    """Path of the embedded dataset's data YAML (unpacked once per session)."""
    from attnyolo.data import default_dataset

    return default_dataset()


@pytest.fixture(scope="session")
def trained(tmp_path_factory, default_data):
    """``(best.pt, mid-training last.pt)`` of a real one-epoch Ultralytics training run (checkpoint and weight
    tests)."""
    return train_tiny(default_data, tmp_path_factory.mktemp("ultralytics-run"))


@pytest.fixture(scope="session")
def val_images(default_data) -> list[Path]:
    """Two validation images of the embedded dataset (``attnyolo viz`` tests in tests/cli and tests/viz)."""
    return [Path(p) for p in sorted((Path(default_data).parent / "images" / "val").glob("*.jpg"))[:2]]
