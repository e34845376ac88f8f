"""Fixtures of the search tests: a local Ray instance (2 CPUs, no dashboard) shared by the module's tests."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="module")
def local_ray():
    import fake_trainable  # tests/search is on sys.path (pytest's prepend mode)
    import ray
    from ray import cloudpickle

    # Ray's workers do not see the test folder on their path: ship the stand-in trainable by value
    cloudpickle.register_pickle_by_value(fake_trainable)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
