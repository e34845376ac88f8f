"""What the trainable counts as done in a run folder after a kill, on Ultralytics' own files: a last.pt written
during training (optimizer kept) continues after its epoch; a stripped last.pt (training ended) means every epoch of
results.csv is done; no last.pt, or one cut short by the kill, means start again."""

from __future__ import annotations

import shutil

import pytest
import torch

from attnyolo.search.trainable import MAP_KEY, epoch_rows, finished_epochs

pytestmark = pytest.mark.slow  # the `trained` fixture trains one tiny epoch

CSV_HEAD = f"epoch,time,{MAP_KEY}\n"


def run_folder(tmp_path, last, csv: str):
    run = tmp_path / "run"
    (run / "weights").mkdir(parents=True)
    if last is not None:
        shutil.copyfile(last, run / "weights" / "last.pt")
    (run / "results.csv").write_text(CSV_HEAD + csv)
    return run


def test_a_mid_training_last_pt_continues_after_its_epoch(trained, tmp_path):
    _, mid = trained
    ckpt = torch.load(mid, map_location="cpu", weights_only=False)
    assert ckpt["optimizer"] is not None
    run = run_folder(tmp_path, mid, "1,5.0,0.1\n2,9.0,0.2\n")  # results.csv ahead of last.pt: a kill in between
    assert finished_epochs(run) == int(ckpt["epoch"]) + 1 == 1


def test_a_stripped_last_pt_means_every_epoch_of_results_csv_is_done(trained, tmp_path):
    best, _ = trained
    stripped = best.parent / "last.pt"
    assert torch.load(stripped, map_location="cpu", weights_only=False)["optimizer"] is None
    run = run_folder(tmp_path, stripped, "1,5.0,0.1\n2,9.0,0.2\n3,13.0,0.3\n")
    assert finished_epochs(run) == 3


def test_no_or_a_cut_last_pt_starts_again(trained, tmp_path):
    _, mid = trained
    assert finished_epochs(run_folder(tmp_path / "a", None, "1,5.0,0.1\n")) == 0
    run = run_folder(tmp_path / "b", mid, "1,5.0,0.1\n")
    data = (run / "weights" / "last.pt").read_bytes()
    (run / "weights" / "last.pt").write_bytes(data[: len(data) // 2])
    assert finished_epochs(run) == 0


def test_an_epoch_done_twice_counts_once_with_its_later_score(tmp_path):
    run = run_folder(tmp_path, None, "1,5.0,0.1\n2,9.0,0.2\n2,4.0,0.25\n")
    assert [(r["epoch"], r[MAP_KEY]) for r in epoch_rows(run)] == [(1, 0.1), (2, 0.25)]
