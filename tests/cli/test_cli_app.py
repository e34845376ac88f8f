"""Bad input to the CLI gives one line on stderr, a non-zero exit, and no traceback."""

import subprocess
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, run_cli


def test_unknown_command():
    assert_one_line_error(run_cli("frobnicate"), "No such command", "frobnicate")


def test_unknown_option():
    assert_one_line_error(run_cli("doctor", "--frob"), "--frob")


def test_missing_data_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    assert_one_line_error(run_cli("data", "check", str(missing)), str(missing), "does not exist")


def check_data(path: Path, content: str | bytes) -> subprocess.CompletedProcess:
    """Write ``content`` to ``path`` and run ``attnyolo data check`` on it."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return run_cli("data", "check", str(path))


def test_data_yaml_that_is_not_yaml(tmp_path):
    assert_one_line_error(check_data(tmp_path / "bad.yaml", "train: [unclosed\nval: :\n"), "not valid YAML")


def test_data_yaml_that_is_binary(tmp_path):
    bad = tmp_path / "binary.yaml"
    assert_one_line_error(check_data(bad, b"\xff\xfe\x00\x81garbage"), str(bad))


def test_data_yaml_without_splits(tmp_path):
    assert_one_line_error(check_data(tmp_path / "nosplits.yaml", "names: {0: a}\n"), "lacks train, val")


def test_data_yaml_pointing_to_missing_images(tmp_path):
    content = f"path: {tmp_path}\ntrain: images/train\nval: images/val\nnames: {{0: a}}\n"
    assert_one_line_error(check_data(tmp_path / "missing_images.yaml", content), "rejected")


@pytest.mark.parametrize("args", [("demo", "--data", "/definitely/not/here.yaml")])
def test_demo_with_missing_data_fails_before_training(args):
    assert_one_line_error(run_cli(*args), "does not exist")


def test_valid_data_yaml_is_accepted(default_data):
    out = run_cli("data", "check", str(default_data))
    assert out.returncode == 0, out.stderr
    assert "3 classes" in out.stdout and "RBC" in out.stdout
