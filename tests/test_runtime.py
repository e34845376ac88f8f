"""The offline runtime: defaults applied before Ultralytics loads, the user's environment wins,
a writable config folder without a writable home, and local fonts that Ultralytics finds."""

import json
import os
import subprocess
import sys

from attnyolo import runtime

PROBE = """
import json, os
import attnyolo
from ultralytics.utils import ONLINE, AUTOINSTALL, USER_CONFIG_DIR
from ultralytics.utils.checks import check_font
print(json.dumps({"offline_env": os.environ.get("YOLO_OFFLINE"), "online": ONLINE, "autoinstall": AUTOINSTALL,
                  "config": str(USER_CONFIG_DIR), "font": str(check_font("Arial.ttf"))}))
"""


def run_probe(env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def clean_env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "ATTNYOLO_"))}
    env.update(ATTNYOLO_HOME=str(tmp_path / "home"), **extra)
    return env


def test_import_sets_offline_defaults_before_ultralytics(tmp_path):
    seen = run_probe(clean_env(tmp_path))
    assert seen["offline_env"] == "1"
    assert seen["online"] is False
    assert seen["autoinstall"] is False
    assert seen["config"].startswith(str(tmp_path / "home"))


def test_user_environment_wins_over_defaults(tmp_path):
    own = tmp_path / "own-config"
    seen = run_probe(clean_env(tmp_path, YOLO_AUTOINSTALL="true", YOLO_CONFIG_DIR=str(own)))
    assert seen["autoinstall"] is True
    assert seen["config"] == str(own / "Ultralytics")


def test_font_is_resolved_locally_to_dejavu(tmp_path):
    seen = run_probe(clean_env(tmp_path))
    assert seen["font"].startswith(str(tmp_path / "home"))
    from matplotlib import get_data_path

    dejavu = os.path.join(get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")
    with open(seen["font"], "rb") as a, open(dejavu, "rb") as b:
        assert a.read() == b.read()


def test_config_dir_falls_back_when_home_is_not_writable(tmp_path):
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    env = clean_env(tmp_path, HOME=str(readonly))
    env.pop("ATTNYOLO_HOME")
    env.pop("XDG_CACHE_HOME", None)
    if os.geteuid() == 0:  # root writes anywhere: point the cache below a file instead, which nobody can create
        (tmp_path / "file").write_text("x")
        env["XDG_CACHE_HOME"] = str(tmp_path / "file" / "cache")
    seen = run_probe(env)
    assert not seen["config"].startswith(str(readonly))
    assert os.access(seen["config"], os.W_OK)


def test_configure_is_idempotent_and_reports_state():
    first = runtime.configure()
    assert runtime.configure() is first
    assert {"offline", "autoinstall", "config_dir", "fonts", "user_set"} <= set(first)


def test_importing_ultralytics_first_warns_and_still_provides_the_fonts(tmp_path):
    env = clean_env(tmp_path, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    code = (
        "import warnings; warnings.simplefilter('always')\n"
        "import ultralytics\nimport attnyolo\n"
        "from attnyolo import runtime\nfrom ultralytics.utils.checks import check_font\n"
        "print(runtime.status()['ultralytics_imported_first'], check_font('Arial.ttf'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "ultralytics was imported before attnyolo" in out.stderr
    first, font = out.stdout.strip().splitlines()[-1].split()
    assert first == "True"
    assert font == str(tmp_path / "xdg" / "Ultralytics" / "Arial.ttf")
