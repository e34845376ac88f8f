"""A stand-in for attnyolo's run in the schedule tests: each epoch takes ``sleep`` seconds and scores what the test
says, and it keeps the trainable's resume contract (finished epochs are saved before they are reported, replayed
on a restart and never trained again).

``runs/<label>/finished.txt`` plays ``last.pt`` (the epochs done); ``trained.log`` in the search folder gets one line
``label epoch`` per epoch trained, the test's record of what was trained, and how often.
"""

from __future__ import annotations

import time
from pathlib import Path

from ray import tune

from attnyolo.search.schedule import EPOCH, METRIC


def score(config: dict, label: str, epoch: int) -> float:
    value = config["scores"][label]
    return float(value[epoch - 1] if isinstance(value, list) else value)


def fake_trainable(config: dict) -> None:
    label = config["label"]
    folder = Path(config["search_dir"])
    run = folder / "runs" / label
    run.mkdir(parents=True, exist_ok=True)
    progress = run / "finished.txt"
    done = int(progress.read_text()) if progress.is_file() else 0
    for epoch in range(1, done + 1):
        tune.report({EPOCH: epoch, METRIC: score(config, label, epoch), "replayed": True})
    for epoch in range(done + 1, config["max_epochs"] + 1):
        time.sleep(config.get("sleep", 0.0))
        with open(folder / "trained.log", "a") as f:
            f.write(f"{label} {epoch}\n")
        progress.write_text(str(epoch))
        tune.report({EPOCH: epoch, METRIC: score(config, label, epoch), "replayed": False})
