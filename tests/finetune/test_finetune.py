"""Fine-tuning with attention from a trained base checkpoint: transfer, identity start, gamma log, freezing, CLI.

The base is a YOLOv8n trained on the embedded dataset once per session (``model_helpers.BASE_RECIPE``: enough
epochs for non-zero metrics, so the metric comparison compares real numbers).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from model_helpers import TINY_RUN, VAL_ARGS, payloads, save_ultralytics, shared_base, state
from ultralytics import YOLO

import attnyolo
from attnyolo.checkpoints import CheckpointError, load_checkpoint
from attnyolo.cli import main
from attnyolo.finetune import GAMMA_COLUMNS, FreezeTransferred, GammaLogger, prepare, start_checker
from attnyolo.weights import TransferError

METRICS = ("metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)")


@pytest.fixture(scope="session")
def base_pt(tmp_path_factory, default_data):
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # this session's folder, shared by its workers
    return shared_base(default_data, root)


def _val(path, data, project, name) -> dict:
    metrics = YOLO(str(path)).val(data=str(data), project=str(project), name=name, **VAL_ARGS)
    return {k: metrics.results_dict[k] for k in METRICS}


def test_transfer_keeps_every_base_tensor_and_the_identity_start_validates_exactly_like_the_base(
    base_pt, default_data, tmp_path
):
    base_state = load_checkpoint(base_pt)["model"].state_dict()
    cfg, imap = attnyolo.insert("yolov8n.yaml", "cbam", "neck")
    edited = attnyolo.build(cfg, nc=3)
    report = attnyolo.transfer(edited, base_pt)  # no index map: found from the checkpoint's and the model's YAML

    assert len(report.transferred) == len(base_state) == 355
    assert report.skipped == [] and report.key_matching_kept < 355
    inserted = {f"model.{i}." for i in imap.inserted}
    assert report.newly_initialised and all(k[: k.index(".", 6) + 1] in inserted for k in report.newly_initialised)
    after = edited.state_dict()
    assert all(torch.equal(after[dst], base_state[src].float()) for src, dst in report.transferred)

    before = _val(base_pt, default_data, tmp_path, "base")
    identity = _val(save_ultralytics(edited, tmp_path / "identity.pt"), default_data, tmp_path, "identity")
    assert before["metrics/mAP50(B)"] > 0  # real numbers are being compared
    assert identity == before  # exactly: precision, recall, mAP50, mAP50-95

    with torch.no_grad():  # control: the same model with the attention switched on validates differently
        for i in imap.inserted:
            edited.model[i].gamma.fill_(1.0)
    assert _val(save_ultralytics(edited, tmp_path / "gamma1.pt"), default_data, tmp_path, "gamma1") != before


def test_finetune_logs_gamma_each_epoch_and_freezes_the_base_for_the_first_epoch(base_pt, default_data, tmp_path):
    snapshots: dict[int, dict] = {}

    def snap(trainer, epoch=None):
        snapshots[trainer.epoch + 1 if epoch is None else epoch] = state(trainer.model)

    result = attnyolo.finetune(
        base_pt,
        "cbam",
        "neck",
        default_data,
        freeze_epochs=1,
        callbacks={"on_train_start": lambda t: snap(t, 0), "on_train_epoch_end": snap},
        print_report=False,
        epochs=2,
        project=str(tmp_path),
        name="ft",
        **TINY_RUN,
    )
    base = {dst for _, dst in result.report.transferred}
    start, frozen, thawed = snapshots[0], snapshots[1], snapshots[2]
    gammas = [f"model.{i}.gamma" for i in (16, 20, 24)]

    # Ultralytics' trainer started from the transferred model (built and filled independently here; the inserted
    # layers' own weights are random, their gamma is 0)
    expected = attnyolo.build(result.cfg, nc=3)
    attnyolo.transfer(expected, base_pt)
    assert set(start) == set(expected.state_dict())
    assert [k for k in base if not torch.equal(start[k], expected.state_dict()[k])] == []
    assert all(float(start[g]) == 0.0 for g in gammas)

    assert len(base) == 355
    assert all(torch.equal(frozen[k], start[k]) for k in base), "a base tensor moved during the frozen epoch"
    assert all(float(frozen[g]) != 0.0 for g in gammas), "gamma did not train during the frozen epoch"
    moved = [k for k in base if not torch.equal(thawed[k], frozen[k])]
    assert len(moved) > 100, "the base did not train after the frozen epoch"
    assert torch.equal(thawed["model.25.dfl.conv.weight"], start["model.25.dfl.conv.weight"])  # Ultralytics' own

    with open(result.gamma_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert result.gamma_csv == result.save_dir / "attnyolo_gamma.csv" and tuple(rows[0]) == GAMMA_COLUMNS
    assert [(int(r["epoch"]), int(r["layer"]), r["attention"]) for r in rows] == [
        (e, i, "cbam") for e in (0, 1, 2) for i in (16, 20, 24)
    ]
    for r in rows:
        assert float(r["gamma"]) == pytest.approx(float(snapshots[int(r["epoch"])][f"model.{r['layer']}.gamma"]))
    assert all(float(r["gamma"]) == 0.0 for r in rows if r["epoch"] == "0")
    assert (result.save_dir / "attnyolo_transfer.txt").read_text().count("transferred 355/355") == 1


def test_finetune_cli_end_to_end_and_best_pt_reloads_in_a_fresh_process(base_pt, default_data, tmp_path, capsys):
    args = [f"{k}={v}" for k, v in TINY_RUN.items()]
    rc = main(["finetune", str(base_pt), "cbam", "--where", "neck", "--data", str(default_data), "epochs=1",
               f"project={tmp_path}", "name=cli", *args])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert "Weight transfer from" in out and "transferred 355/355" in " ".join(out.split())
    best = tmp_path / "cli" / "weights" / "best.pt"
    assert f"best: {best}" in " ".join(out.split())
    assert (tmp_path / "cli" / "attnyolo_gamma.csv").is_file()
    args = yaml.safe_load((tmp_path / "cli" / "args.yaml").read_text())  # issue 11: the run can be re-run
    assert args["model"] == str(tmp_path / "cli" / "weights" / "start.pt")
    start = load_checkpoint(args["model"])["model"].state_dict()  # the transferred model, before training
    again = prepare(base_pt, "cbam", "neck", default_data)
    assert len(again.report.transferred) == 355
    assert all(torch.equal(start[dst], again.model.state_dict()[dst]) for _, dst in again.report.transferred)

    script = f"""
import json, attnyolo
from ultralytics import YOLO
YOLO({args["model"]!r})  # the recorded start checkpoint loads
ckpt = attnyolo.load_checkpoint({str(best)!r})  # the safe loader accepts it: no trust needed
layers = [type(m).__name__ for m in (ckpt["ema"] or ckpt["model"]).model if type(m).__name__.startswith("ay_")]
m = YOLO({str(best)!r})
r = m.val(data={str(default_data)!r}, project={str(tmp_path)!r}, name="fresh", **{VAL_ARGS!r})
print(json.dumps({{"layers": layers, "metrics": {{k: r.results_dict[k] for k in {METRICS!r}}}}}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fresh = json.loads(proc.stdout.strip().splitlines()[-1])
    assert fresh["layers"] == ["ay_cbam"] * 3
    assert fresh["metrics"] == _val(best, default_data, tmp_path, "here")


def test_data_with_another_class_count_leaves_only_the_class_convs_behind_with_the_reason(tmp_path, default_data):
    base = save_ultralytics(attnyolo.build("yolov8n.yaml", nc=3), tmp_path / "base.pt")
    names = {0: "RBC", 1: "WBC", 2: "Platelets", 3: "other"}
    data = tmp_path / "four.yaml"
    data.write_text(yaml.safe_dump({"path": str(default_data.parent), "train": "images/train", "val": "images/val",
                                    "names": names}))  # fmt: skip
    prepared = prepare(base, "cbam", "neck", data)
    assert prepared.model.model[-1].nc == 4 and prepared.model.names == names
    assert len(prepared.report.transferred) == 355 - 6
    reasons = dict(prepared.report.skipped)
    assert sorted(reasons) == sorted(f"model.22.cv3.{i}.2.{p}" for i in range(3) for p in ("weight", "bias"))
    assert all(r.endswith("the base has 3 classes, the data 4") for r in reasons.values())
    assert prepared.cfg["attnyolo"]["base"] == str(base)


# ----------------------------------------------------------------------------------------------------- bad input


def _fails(capsys, *argv) -> str:
    rc = main(list(map(str, argv)))
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("attnyolo: error: ") and err.count("\n") == 1, err
    return err


def test_cli_missing_checkpoint_is_one_line(capsys, tmp_path, default_data):
    err = _fails(capsys, "finetune", tmp_path / "nope.pt", "cbam", "--data", default_data)
    assert f"{tmp_path / 'nope.pt'}: file not found" in err


def test_cli_malicious_pickle_is_refused_and_never_runs(capsys, tmp_path, default_data):
    marker = tmp_path / "pwned"
    payload, global_name = payloads(marker)["os.system"]
    path = tmp_path / "evil.pt"
    torch.save({"model": payload}, path)
    err = _fails(capsys, "finetune", path, "cbam", "--data", default_data)
    assert "refused to load" in err and global_name in err and "--trust-checkpoint" in err
    assert not marker.exists()


def test_a_model_yaml_that_would_run_code_is_refused_before_building(tmp_path, default_data):
    marker = tmp_path / "pwned"
    model = attnyolo.build("yolov8n.yaml", nc=3)
    model.yaml["activation"] = f"__import__('os').system('touch {marker}')"
    path = save_ultralytics(model, tmp_path / "evil-yaml.pt")
    with pytest.raises(CheckpointError, match="refused model YAML: activation"):
        attnyolo.finetune(path, "cbam", data=default_data)
    assert not marker.exists()


def test_cli_classification_checkpoint_is_the_wrong_architecture(capsys, tmp_path, default_data):
    path = save_ultralytics(attnyolo.build("yolov8n-cls.yaml", nc=3), tmp_path / "cls.pt")
    err = _fails(capsys, "finetune", path, "cbam", "--data", default_data)
    assert f"{path}: a classify model (Classify head); finetune takes detection models" in err


def test_cli_state_dict_without_architecture_is_refused(capsys, tmp_path, default_data):
    path = tmp_path / "sd.pt"
    torch.save(attnyolo.build("yolov8n.yaml", nc=3).state_dict(), path)
    err = _fails(capsys, "finetune", path, "cbam", "--data", default_data)
    assert "holds no model architecture" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["epoch=1"], "'epoch' is not an Ultralytics training argument; did you mean epochs?"),
        (["model=yolov8s.pt"], "model= cannot be set here"),
        (["pretrained=other.pt"], "pretrained= cannot be set here"),
        (["epochs"], "Ultralytics arguments are key=value"),
    ],
)
def test_cli_bad_yolo_arguments_are_one_line(capsys, tmp_path, default_data, extra, message):
    path = save_ultralytics(attnyolo.build("yolov8n.yaml", nc=3), tmp_path / "base.pt")
    assert message in _fails(capsys, "finetune", path, "cbam", "--data", default_data, *extra)


# ---------------------------------------------------------------------------------------------- attnyolo transfer


def test_transfer_cli_writes_a_checkpoint_that_reproduces_the_base(capsys, tmp_path):
    base = attnyolo.build("yolov8n.yaml", nc=3).eval()
    base_path = save_ultralytics(base, tmp_path / "base.pt")
    cfg, _ = attnyolo.insert("yolov8n.yaml", "cbam", "neck")
    edited_yaml = tmp_path / "yolov8n-cbam.yaml"
    attnyolo.dump(cfg, edited_yaml)
    out = tmp_path / "start.pt"
    assert main(["transfer", str(edited_yaml), str(base_path), "-o", str(out), "--strict"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "transferred 355/355" in text and "index map: aligned" in text
    model = YOLO(str(out)).model.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x)[0], base(x)[0])


def test_transfer_cli_strict_refuses_another_architecture(capsys, tmp_path):
    base_path = save_ultralytics(attnyolo.build("yolov8n.yaml", nc=3), tmp_path / "base.pt")
    cfg, _ = attnyolo.insert("yolo11n.yaml", "cbam", "neck")
    attnyolo.dump(cfg, tmp_path / "yolo11n-cbam.yaml")
    err = _fails(capsys, "transfer", tmp_path / "yolo11n-cbam.yaml", base_path, "-o", tmp_path / "o.pt", "--strict")
    assert "would be left behind" in err and not (tmp_path / "o.pt").exists()


# ----------------------------------------------------------------------------------------------- the callbacks alone


class _Trainer:
    def __init__(self, model, save_dir, epoch=0, start_epoch=0):
        self.model, self.save_dir, self.epoch, self.start_epoch, self.ema = model, save_dir, epoch, start_epoch, None


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_gamma_logger_rewrites_its_csv_and_a_resumed_run_keeps_earlier_epochs(tmp_path):
    cfg, _ = attnyolo.insert("yolov8n.yaml", "se", "neck")
    model = attnyolo.build(cfg)
    logger = GammaLogger()
    logger.on_train_start(_Trainer(model, tmp_path))
    with torch.no_grad():
        model.model[16].gamma.fill_(0.25)
    logger.on_train_epoch_end(_Trainer(model, tmp_path, epoch=0))
    rows = _rows(tmp_path / "attnyolo_gamma.csv")
    assert rows[1:4] == [["0", "16", "se", "0", ""], ["0", "20", "se", "0", ""], ["0", "24", "se", "0", ""]]
    assert rows[4] == ["1", "16", "se", "0.25", ""] and len(rows) == 7
    assert [p.name for p in tmp_path.iterdir()] == ["attnyolo_gamma.csv"]  # no temporary file left behind

    resumed = GammaLogger()
    resumed.on_train_start(_Trainer(model, tmp_path, epoch=1, start_epoch=1))
    rows = _rows(tmp_path / "attnyolo_gamma.csv")
    assert [r[0] for r in rows[1:]] == ["0"] * 3 + ["1"] * 3 and rows[4][3] == "0.25"


def test_gamma_logger_writes_nothing_for_a_model_without_gamma(tmp_path):
    logger = GammaLogger()
    logger.on_train_start(_Trainer(attnyolo.build("yolov8n.yaml"), tmp_path))
    assert not (tmp_path / "attnyolo_gamma.csv").exists()


def test_freeze_restores_each_parameters_own_requires_grad():
    model = attnyolo.build(attnyolo.insert("yolov8n.yaml", "se", "neck")[0])
    model.model[25].dfl.conv.weight.requires_grad_(False)  # as Ultralytics' trainer leaves it
    keys = {k for k in model.state_dict() if not k.startswith("model.16.")}
    freezer = FreezeTransferred(keys, epochs=1)
    freezer.on_train_epoch_start(_Trainer(model, None, epoch=0))
    params = dict(model.named_parameters())
    assert not any(params[k].requires_grad for k in params if k in keys)
    assert all(params[k].requires_grad for k in params if k.startswith("model.16."))
    model.train()
    freezer.on_train_batch_start(_Trainer(model, None, epoch=0))
    assert not model.model[0].bn.training and model.model[16].training
    freezer.on_train_epoch_start(_Trainer(model, None, epoch=1))
    assert all(p.requires_grad for k, p in params.items() if k != "model.25.dfl.conv.weight")
    assert not params["model.25.dfl.conv.weight"].requires_grad


def test_start_checker_raises_when_the_trainer_lost_transferred_weights():
    model = attnyolo.build("yolov8n.yaml")
    expected = state(model)
    start_checker(expected)(_Trainer(model, None))  # same weights: passes
    with torch.no_grad():
        model.model[3].conv.weight.add_(1.0)
    with pytest.raises(TransferError, match=r"did not start from the transferred weights: .*1 changed"):
        start_checker(expected)(_Trainer(model, None))


def test_the_safe_loader_accepts_a_checkpoint_with_attention_layers(tmp_path):
    """Regression: once ``import attnyolo`` has registered the adapters as safe globals, they appear in the
    loader's scan as already registered; the allow-list must still hand torch plain strings."""
    model = attnyolo.build(attnyolo.insert("yolov8n.yaml", "cbam", "neck")[0], nc=3)
    ckpt = load_checkpoint(save_ultralytics(model, tmp_path / "cbam.pt"))
    assert [type(m).__name__ for m in ckpt["model"].model[16:25:4]] == ["ay_cbam"] * 3
