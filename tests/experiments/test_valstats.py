"""val_stats arrays from the validator's per-image records: images sorted, every prediction and target indexed to
its image, written and read back without pickle."""

from __future__ import annotations

import numpy as np

from attnyolo.experiments import valstats


def _record(name: str, n_pred: int, targets: list[int], seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"im_name": name, "tp": rng.random((n_pred, 10)) > 0.5, "conf": rng.random(n_pred),
            "pred_cls": rng.integers(0, 3, n_pred).astype(float), "target_cls": np.array(targets, float)}  # fmt: skip


def test_records_in_any_order_give_arrays_indexed_by_sorted_image(tmp_path):
    recs = [_record("c.jpg", 2, [1], 0), _record("a.jpg", 0, [0, 2], 1), _record("b.jpg", 3, [], 2)]
    s = valstats.from_records(recs, {0: "RBC", 1: "WBC", 2: "Platelets"})
    assert list(s["images"]) == ["a.jpg", "b.jpg", "c.jpg"] and list(s["names"]) == ["RBC", "WBC", "Platelets"]
    assert list(s["pred_img"]) == [1, 1, 1, 2, 2] and list(s["target_img"]) == [0, 0, 2]
    assert list(s["target_cls"]) == [0, 2, 1]
    assert np.array_equal(s["tp"][:3], recs[2]["tp"]) and np.array_equal(s["tp"][3:], recs[0]["tp"])
    assert np.allclose(s["conf"][3:], recs[0]["conf"]) and s["conf"].dtype == np.float32
    assert s["pred_cls"].dtype == np.int32 and s["tp"].dtype == bool
    back = valstats.load(valstats.save(tmp_path / "v.npz", s))
    assert back.keys() == s.keys() and all(np.array_equal(back[k], s[k]) for k in s)
