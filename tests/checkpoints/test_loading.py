"""Safe checkpoint loading: real Ultralytics checkpoints load without pickle code; attacks and damage are refused."""

from __future__ import annotations

import pickle
import zipfile

import pytest
import torch
from model_helpers import build, payloads, yolov8n_cfg
from torch import nn
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import IterableSimpleNamespace

from attnyolo.checkpoints import CheckpointError, load_checkpoint, save_safetensors


def _same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------------------------- real checkpoints


def test_trained_ultralytics_checkpoint_loads_without_trust(trained):
    best, _ = trained
    ckpt = load_checkpoint(best)
    assert isinstance(ckpt["model"], DetectionModel)
    assert ckpt["train_args"]["epochs"] == 1 and isinstance(ckpt["date"], str)
    trusted = load_checkpoint(best, trust=True)  # a full pickle load is the reference
    assert _same_tensors(ckpt["model"].state_dict(), trusted["model"].state_dict())


def test_mid_training_checkpoint_with_ema_and_optimizer_loads_without_trust(trained):
    _, mid = trained
    ckpt = load_checkpoint(mid)
    assert isinstance(ckpt["ema"], DetectionModel)
    assert isinstance(ckpt["ema"].args, IterableSimpleNamespace)  # a plain type the allow-list must admit
    assert ckpt["optimizer"]["state"], "optimizer state should come back"
    trusted = load_checkpoint(mid, trust=True)
    assert _same_tensors(ckpt["ema"].state_dict(), trusted["ema"].state_dict())


def test_state_dict_pt_loads_as_its_tensors(tmp_path):
    state = build(yolov8n_cfg()).state_dict()
    torch.save(state, tmp_path / "sd.pt")
    assert _same_tensors(load_checkpoint(tmp_path / "sd.pt"), state)


def test_safetensors_file_loads_as_its_tensors(tmp_path):
    model = build(yolov8n_cfg())
    save_safetensors(model, tmp_path / "m.safetensors")
    assert _same_tensors(load_checkpoint(tmp_path / "m.safetensors"), model.state_dict())


def test_whole_module_saved_with_torch_save_loads_as_model_entry(tmp_path):
    torch.save(nn.Sequential(nn.Conv2d(3, 4, 1), nn.SiLU()), tmp_path / "module.pt")
    ckpt = load_checkpoint(tmp_path / "module.pt")
    assert isinstance(ckpt["model"], nn.Sequential) and ckpt["model"][0].weight.shape == (4, 3, 1, 1)


def test_plain_types_of_ultralytics_checkpoints_load_without_trust(tmp_path):
    import numpy as np

    extras = {
        "best_fitness": np.float64(0.25),  # older Ultralytics checkpoints store numpy scalars and dtypes
        "lr": np.float32(0.01),
        "save_dir": tmp_path / "runs",
        "args": IterableSimpleNamespace(epochs=3, imgsz=64),
    }
    torch.save({"model": build(yolov8n_cfg()), **extras}, tmp_path / "plain.pt")
    ckpt = load_checkpoint(tmp_path / "plain.pt")
    assert ckpt["best_fitness"] == np.float64(0.25) and ckpt["lr"].dtype == np.float32
    assert ckpt["save_dir"] == tmp_path / "runs" and ckpt["args"].imgsz == 64


def test_safe_load_leaves_the_process_allow_list_as_it_was(trained):
    best, _ = trained
    before = set(torch.serialization.get_safe_globals())
    load_checkpoint(best)
    assert set(torch.serialization.get_safe_globals()) == before
    with pytest.raises(pickle.UnpicklingError):  # a later plain weights_only load is not widened by ours
        torch.load(best, weights_only=True)


# ---------------------------------------------------------------------------------------------------- attacks


@pytest.mark.parametrize("payload", ["os.system", "builtins.exec", "Path.write_text"])
def test_pickle_that_calls_a_function_is_refused_and_never_runs(tmp_path, payload):
    marker = tmp_path / "pwned"
    obj, global_name = payloads(marker)[payload]
    path = tmp_path / "evil.pt"
    torch.save({"model": build(yolov8n_cfg()).state_dict(), "extra": obj}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert str(path) in message and global_name in message
    assert "trust=True" in message and "--trust-checkpoint" in message
    assert not marker.exists()


def test_pickle_that_calls_a_layer_constructor_is_refused(tmp_path):
    # DetectionModel(cfg) eval()s cfg["activation"]: allow-listing layer classes alone would run this string.
    marker = tmp_path / "pwned"
    cfg = yolov8n_cfg()
    cfg["activation"] = f"__import__('pathlib').Path({str(marker)!r}).write_text('x') or nn.SiLU()"

    class BuildsModel:
        def __reduce__(self):
            return DetectionModel, (cfg,)

    path = tmp_path / "evil.pt"
    torch.save({"model": BuildsModel()}, path)
    with pytest.raises(CheckpointError, match="ultralytics.nn.tasks.DetectionModel .called as a constructor"):
        load_checkpoint(path)
    assert not marker.exists()


def test_raw_pickle_file_is_refused_without_being_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "raw.pt"
    path.write_bytes(pickle.dumps(payloads(marker)["builtins.exec"][0], protocol=5))
    with pytest.raises(CheckpointError, match="raw pickle") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "trust=True" in str(err.value)
    assert not marker.exists()


def test_pickled_module_carrying_a_hook_is_refused(tmp_path):
    conv = nn.Conv2d(3, 4, 1)
    conv.register_forward_hook(nn.Identity)  # an allow-listed class, yet a callable the model would run
    torch.save({"model": conv}, tmp_path / "hooked.pt")
    with pytest.raises(CheckpointError, match="_forward_hooks"):
        load_checkpoint(tmp_path / "hooked.pt")


def test_pickled_module_whose_instance_overrides_forward_is_refused(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.SiLU())
    model[0].forward = nn.Identity  # an allow-listed class in the instance dict: conv(x) would call it instead
    torch.save({"model": model}, tmp_path / "override.pt")
    with pytest.raises(
        CheckpointError, match=r"override\.pt: refused to load: module Conv2d 0 carries a forward override"
    ):
        load_checkpoint(tmp_path / "override.pt")
    trusted = load_checkpoint(tmp_path / "override.pt", trust=True)  # the override is really in the file
    assert trusted["model"][0].__dict__["forward"] is nn.Identity


# -------------------------------------------------------------------------------------------- damaged files


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pt: file not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_empty_file_is_reported(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt: the file is empty"):
        load_checkpoint(tmp_path / "empty.pt")


def test_checkpoint_cut_in_half_is_reported_as_truncated(tmp_path, trained):
    best, _ = trained
    data = best.read_bytes()
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"half\.pt: truncated or corrupted checkpoint"):
        load_checkpoint(tmp_path / "half.pt")


def test_flipped_byte_inside_a_tensor_is_reported_as_corrupted(tmp_path):
    path = tmp_path / "flip.pt"
    torch.save({"w": torch.zeros(4096)}, path)
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("data/0"))
    data = bytearray(path.read_bytes())
    name_len, extra_len = (
        int.from_bytes(data[info.header_offset + o : info.header_offset + o + 2], "little") for o in (26, 28)
    )
    data[info.header_offset + 30 + name_len + extra_len + 100] ^= 0xFF  # inside the tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"flip\.pt: corrupted checkpoint: record .*data/0.* CRC"):
        load_checkpoint(path)


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    (tmp_path / "noise.pt").write_bytes(bytes(range(7, 256)) * 4)
    with pytest.raises(CheckpointError, match=r"noise\.pt: not a checkpoint \(unrecognised format.*Recognised formats"):
        load_checkpoint(tmp_path / "noise.pt")


def test_text_file_is_not_a_checkpoint(tmp_path):
    (tmp_path / "model.pt").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\n")
    with pytest.raises(CheckpointError, match=r"model\.pt: not a checkpoint but a text file .*git-lfs"):
        load_checkpoint(tmp_path / "model.pt")


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_torchscript_archive_is_named_as_such(tmp_path):
    torch.jit.script(nn.Linear(2, 2)).save(str(tmp_path / "ts.pt"))
    with pytest.raises(CheckpointError, match=r"ts\.pt: a TorchScript archive"):
        load_checkpoint(tmp_path / "ts.pt")


def _valid_safetensors(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"a": torch.arange(64, dtype=torch.float32)}, str(path))
    return path, path.read_bytes()


def test_safetensors_header_longer_than_the_file_is_reported(tmp_path):
    path, data = _valid_safetensors(tmp_path)
    path.write_bytes((10**6).to_bytes(8, "little") + data[8:])
    with pytest.raises(CheckpointError, match=r"w\.safetensors: corrupt or truncated safetensors file: the header"):
        load_checkpoint(path)


def test_safetensors_header_that_is_not_json_is_reported(tmp_path):
    path, data = _valid_safetensors(tmp_path)
    n = int.from_bytes(data[:8], "little")
    path.write_bytes(data[:8] + b"{" + b"#" * (n - 1) + data[8 + n :])
    with pytest.raises(CheckpointError, match=r"w\.safetensors: corrupt safetensors header: not valid JSON"):
        load_checkpoint(path)


def test_truncated_safetensors_is_reported(tmp_path):
    path, data = _valid_safetensors(tmp_path)
    path.write_bytes(data[:-16])
    with pytest.raises(CheckpointError, match=r"w\.safetensors: truncated safetensors file: tensor data needs 256"):
        load_checkpoint(path)
