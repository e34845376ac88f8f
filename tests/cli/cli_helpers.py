"""Helpers of the top-level CLI tests: run the installed ``attnyolo`` console script, check one-line errors."""

import subprocess
import sys
from pathlib import Path

ATTNYOLO = Path(sys.executable).with_name("attnyolo")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ATTNYOLO, *args], capture_output=True, text=True, timeout=300)


def assert_one_line_error(out: subprocess.CompletedProcess, *fragments: str) -> None:
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("attnyolo: error:")
    assert "Traceback" not in out.stderr + out.stdout
    for fragment in fragments:
        assert fragment in lines[0]
