"""The package imports, reports its version, and its CLI answers --help, --version and doctor."""

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import attnyolo
from attnyolo.cli import main

ATTNYOLO = Path(sys.executable).with_name("attnyolo")


def test_version_matches_installed_metadata():
    assert attnyolo.__version__ == metadata.version("attnyolo")


def test_console_script_help_lists_commands():
    out = subprocess.run([ATTNYOLO, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for command in ("doctor", "demo", "data", "list", "describe"):
        assert command in out.stdout


def test_console_script_version():
    out = subprocess.run([ATTNYOLO, "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert out.stdout.strip() == f"attnyolo {attnyolo.__version__}"


def test_doctor_reports_versions_and_offline_setup(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    import torch
    import ultralytics

    assert torch.__version__ in out
    assert ultralytics.__version__ in out
    assert "active = 1" in out  # YOLO_OFFLINE in force
    assert "off = false" in out  # YOLO_AUTOINSTALL in force


def test_bare_command_shows_help_and_succeeds(capsys):
    assert main([]) == 0
    assert "Usage" in capsys.readouterr().out
