"""A search's rungs over the stand-in trainable, as a process the resume test can kill: ``python stand_in_search.py
FOLDER SLEEP``. It creates the folder's store on the first run and reopens it after a kill (as the driver does)."""

from __future__ import annotations

import sys
from pathlib import Path

import fake_trainable
import ray
from ray import cloudpickle

from attnyolo.search.rungs import run_rungs
from attnyolo.search.schedule import plan
from attnyolo.search.store import DB_NAME, SearchStore

SCORES = {"a": 0.5, "b": 0.7, "c": 0.4, "d": 0.9, "e": 0.6, "f": 0.8, "g": 0.3, "h": 0.55, "i": 0.65}
SCHEDULE = plan(len(SCORES), grace=1, eta=3, rung_count=3)  # rungs 1, 3, 9


def main(folder: Path, sleep: float) -> None:
    if (folder / DB_NAME).is_file():
        store = SearchStore(folder)
    else:
        store = SearchStore.create(folder, {"stand-in": True})
        store.add_candidates(
            [{"label": k, "position": i, "attention": k, "place": "neck", "params": 0, "added_params": 0,
              "gflops": 0.0, "gflops_ratio": 1.0} for i, k in enumerate(SCORES)]
        )  # fmt: skip
    cloudpickle.register_pickle_by_value(fake_trainable)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    config = {"search_dir": str(folder), "scores": SCORES, "max_epochs": SCHEDULE.max_epochs, "sleep": sleep}
    run_rungs(store, list(SCORES), SCHEDULE, fake_trainable.fake_trainable, config)
    store.close()
    ray.shutdown()
    print("search finished")


if __name__ == "__main__":
    main(Path(sys.argv[1]), float(sys.argv[2]))
