"""Offline-safe Ultralytics runtime, configured once when ``attnyolo`` is imported.

Ultralytics reaches for the network in several places: a DNS probe at import (``is_online``),
event/settings sync, auto-installing missing packages, downloading the Arial font for plots, and
hub/platform callbacks. attnyolo must run in offline labs, so before Ultralytics is imported we set
its own switches, as defaults that the user's environment overrides:

- ``YOLO_OFFLINE=1``: ``is_online()`` returns False without a DNS probe, so no event is sent.
- ``YOLO_AUTOINSTALL=false``: a missing package is reported, never pip-installed.
- ``YOLO_CONFIG_DIR``: a writable folder of attnyolo's (settings, fonts), so nothing depends on the
  user's home being writable and the user's own Ultralytics settings (API keys, loggers) stay out.
- fonts: Ultralytics looks for ``Arial.ttf``/``Arial.Unicode.ttf`` in its config folder before
  downloading them; we place matplotlib's bundled DejaVu Sans there under those names.

- ``runs_dir``: in attnyolo's own settings file, ``runs`` (relative), so ``YOLO(...).train()``/``.val()``
  write to ``runs/`` of the current directory, as plain Ultralytics does (see :func:`runs_follow_cwd`).

Nothing here patches Ultralytics' files or functions. Ultralytics reads these switches once, when it is
first imported, so ``import attnyolo`` must come before ``import ultralytics`` (isort puts third-party
imports first: keep ``import attnyolo`` on top or set the variables in the environment). When Ultralytics
was imported first, :func:`configure` still places the fonts in the folder Ultralytics chose and warns.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

ENV_DEFAULTS = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false"}
FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")
RUNS_DIR = "runs"
"""Ultralytics' ``runs_dir`` in attnyolo's settings file: relative, so it is ``runs/`` of the current directory."""
RUNS_DIR_MARKER = "attnyolo-runs-dir-set"
"""A file beside the settings file: attnyolo set ``runs_dir`` once there; a later choice of the user's is kept."""

_state: dict[str, object] = {}


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.touch()
        probe.unlink()
        return True
    except OSError:
        return False


def cache_dir() -> Path:
    """attnyolo's writable cache folder: ``$ATTNYOLO_HOME``, else ``$XDG_CACHE_HOME/attnyolo``, else
    ``~/.cache/attnyolo``, else a per-user folder in the temp dir when the home is read-only."""
    candidates = []
    if os.environ.get("ATTNYOLO_HOME"):
        candidates.append(Path(os.environ["ATTNYOLO_HOME"]).expanduser())
    xdg = os.environ.get("XDG_CACHE_HOME")
    candidates.append(Path(xdg) / "attnyolo" if xdg else Path.home() / ".cache" / "attnyolo")
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    candidates.append(Path(tempfile.gettempdir()) / f"attnyolo-{uid}")
    for folder in candidates:
        if _writable(folder):
            return folder
    raise OSError(f"no writable cache folder for attnyolo; tried {', '.join(map(str, candidates))}; set ATTNYOLO_HOME")


def ultralytics_config_dir() -> Path:
    """The folder Ultralytics uses for settings and fonts (``$YOLO_CONFIG_DIR/Ultralytics``)."""
    return Path(os.environ["YOLO_CONFIG_DIR"]).expanduser() / "Ultralytics"


def _install_fonts(folder: Path) -> None:
    from matplotlib import get_data_path  # matplotlib ships DejaVu; Ultralytics already depends on it

    source = Path(get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    folder.mkdir(parents=True, exist_ok=True)
    for name in FONT_NAMES:
        target = folder / name
        if not target.exists():  # never overwrite a user's real font
            tmp = target.with_suffix(".tmp")
            shutil.copyfile(source, tmp)
            tmp.replace(target)  # atomic: a parallel process never sees half a font


def configure() -> dict[str, object]:
    """Apply the offline defaults (idempotent). Returns what was set and what the user had set."""
    if _state:
        return _state
    user_set = {k: os.environ[k] for k in (*ENV_DEFAULTS, "YOLO_CONFIG_DIR") if k in os.environ}
    late = sys.modules.get("ultralytics.utils")  # Ultralytics already read its switches
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if "YOLO_CONFIG_DIR" not in os.environ:
        os.environ["YOLO_CONFIG_DIR"] = str(cache_dir() / "config")
    font_dir = Path(late.USER_CONFIG_DIR) if late is not None else ultralytics_config_dir()
    if late is not None:
        warnings.warn(
            "ultralytics was imported before attnyolo, so its offline switches (YOLO_OFFLINE, YOLO_AUTOINSTALL, "
            "YOLO_CONFIG_DIR) were read without attnyolo's defaults; import attnyolo first, or set them in the "
            "environment",
            RuntimeWarning,
            stacklevel=3,
        )
    fonts_ok = True
    try:
        _install_fonts(font_dir)
    except OSError:  # read-only config dir chosen by the user: plotting then needs their own fonts
        fonts_ok = False
    offline = os.environ["YOLO_OFFLINE"].strip().lower() in {"1", "true", "yes", "on", "y", "t"}
    autoinstall = os.environ["YOLO_AUTOINSTALL"].strip().lower() in {"1", "true", "yes", "on", "y", "t"}
    if late is not None:  # what the already-imported Ultralytics actually uses
        offline = offline and "YOLO_OFFLINE" in user_set
        autoinstall = bool(late.AUTOINSTALL)
    _state.update(
        ultralytics_imported_first=late is not None,
        owns_settings=late is None and "YOLO_CONFIG_DIR" not in user_set,
        user_set=user_set,
        offline=offline,
        autoinstall=autoinstall,
        config_dir=str(font_dir),
        fonts=fonts_ok,
    )
    return _state


def import_ultralytics() -> None:
    """Import Ultralytics with its first-run notice ("Creating new Ultralytics Settings ...") on stderr.

    Ultralytics logs to stdout, and on the first import in a new config folder it logs that notice: a command
    whose stdout is data (``D=$(attnyolo data default)``) would capture it. The notice alone goes to stderr; the
    log handler is then pointed back at stdout, where Ultralytics prints everything else.
    """
    if "ultralytics.utils" in sys.modules:
        return
    with contextlib.redirect_stdout(sys.stderr):
        import ultralytics.utils  # noqa: F401
    for handler in logging.getLogger("ultralytics").handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
            handler.setStream(sys.stdout)
    runs_follow_cwd()


def runs_follow_cwd() -> None:
    """Set ``runs_dir`` to ``runs`` (relative) in attnyolo's Ultralytics settings, once per settings file.

    Ultralytics writes ``runs_dir`` when it creates its settings file: ``<git root>/runs`` when the ultralytics
    package lies inside a git checkout (a virtual environment inside a clone of attnyolo), else ``runs``,
    relative, which follows the current directory. attnyolo's settings file is shared by every clone and folder,
    so the absolute form would send every later ``YOLO(...).val()``, from any folder, to the first clone's
    ``runs/``. Only attnyolo's own settings file is touched (never one under a ``YOLO_CONFIG_DIR`` of the
    user's), and only once: a ``runs_dir`` the user sets afterwards (``attnyolo yolo settings runs_dir=...``)
    stays.
    """
    if not configure().get("owns_settings"):
        return
    from ultralytics.utils import SETTINGS  # imported by import_ultralytics() after the switches above

    marker = Path(SETTINGS.file).with_name(RUNS_DIR_MARKER)
    if marker.exists():
        return
    try:
        if SETTINGS.get("runs_dir") != RUNS_DIR:
            SETTINGS.update(runs_dir=RUNS_DIR)
        marker.write_text("attnyolo set Ultralytics' runs_dir to 'runs' (the current directory's) here once\n")
    except OSError:  # a read-only config folder: Ultralytics' own value stays
        pass


def status() -> dict[str, object]:
    """What :func:`configure` did, for ``attnyolo doctor``."""
    return dict(configure())
