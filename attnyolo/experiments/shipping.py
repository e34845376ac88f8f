"""Run folders that reach the driver through Ray: no filesystem shared between the driver and its workers assumed.

A grid's results database, its report and its resume read ``GRID_DIR/runs/<run_id>/`` on the driver's machine. A
Ray worker on another machine cannot write there, so it trains in a folder of its own disk (:func:`worker_grid_dir`),
packs the files the driver needs (:func:`pack_run`: a ``{relative path: bytes}`` mapping, returned with the run's
row through Ray's object store), and the driver writes them into its own run folder (:func:`unpack_run`) before it
stores the row. A worker that sees the driver's grid folder (the same machine, or shared storage mounted at the same
path) trains there directly, as it always did: :func:`grid_token` and :func:`sees_driver_folder` tell the two apart
with a random token the driver keeps in its ``runs/`` folder, so a folder that merely has the same path on a worker
(its own, empty or another grid's) is never mistaken for the driver's.

What travels (:func:`shipped`): every regular file of the run folder (``val_stats.npz``, ``results.csv``,
``args.yaml``, ``attnyolo_gamma.csv``, ``attnyolo_transfer.txt``, ``weights/best.pt``, Ultralytics' plots) except
the checkpoints the report and resume never read (:data:`LEFT_ON_WORKER`): ``weights/last.pt`` (after a finished
run Ultralytics has stripped its optimiser, so it cannot resume anything; it is the last epoch's weights, while
every number, the gallery and ``attnyolo viz`` use ``best.pt``), ``weights/start.pt`` (the start model, a pure
function of grid, variant and seed that the same grid rebuilds) and Ultralytics' ``save_period`` snapshots
``weights/epoch*.pt``. Left out, a yolov8n run ships about 6 MB instead of 3 to 4 times that.

Every function here is plain data in, files out, so other Ray front ends (Ray Tune trainables) can reuse them.
"""

from __future__ import annotations

import fnmatch
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from attnyolo.atomic import write_atomically
from attnyolo.errors import AttnYoloError

GRID_MARKER = ".attnyolo-grid-token"
"""The file in the driver's ``GRID_DIR/runs/`` holding the grid's token (see :func:`grid_token`)."""
WORKER_DIR_ENV = "ATTNYOLO_WORKER_DIR"
"""Where a worker that cannot see the driver's folder trains (default: the system's temporary folder's
``attnyolo-worker``); set it in the environment of the worker node's ``ray start``."""
LEFT_ON_WORKER = ("weights/last.pt", "weights/start.pt", "weights/epoch*.pt")
"""Run-folder files (glob patterns) that are not shipped: see the module docstring for why."""
_TOKEN = re.compile(r"[0-9a-f]{32}")


class ShippingError(AttnYoloError):
    """A run's files that cannot be packed or written: an unsafe name, an unreadable folder."""


def check_run_id(run_id: object) -> str:
    """``run_id`` when it names one folder inside ``runs/`` (no separator, not ``.`` or ``..``), else one line."""
    if (
        not isinstance(run_id, str)
        or not run_id
        or run_id in {".", ".."}
        or "/" in run_id
        or "\\" in run_id
        or "\0" in run_id
    ):
        raise ShippingError(f"run id {run_id!r} is not a folder name (no '/', '\\', NUL, '.' or '..' allowed)")
    return run_id


def check_name(name: object) -> str:
    """``name`` when it is a relative POSIX path inside a run folder (parts that are not empty, ``.`` or ``..``;
    not absolute; no backslash or NUL), else one line: a packed name can never write outside its run folder."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name or name.startswith("/"):
        raise ShippingError(f"shipped file name {name!r} is not a relative path inside a run folder")
    parts = name.split("/")
    if any(part in {"", ".", ".."} for part in parts):
        raise ShippingError(f"shipped file name {name!r} has an empty, '.' or '..' part; only plain names allowed")
    return name


def shipped(name: str, left_on_worker: tuple[str, ...] = LEFT_ON_WORKER) -> bool:
    """Whether the run-folder file ``name`` (relative POSIX path) is packed (not matched by ``left_on_worker``)."""
    return not any(fnmatch.fnmatchcase(name, pattern) for pattern in left_on_worker)


def pack_run(run_dir: str | os.PathLike, left_on_worker: tuple[str, ...] = LEFT_ON_WORKER) -> dict[str, bytes]:
    """The files of ``run_dir`` the driver needs, as ``{relative POSIX path: content}`` (sorted by path).

    ``left_on_worker``: glob patterns of files not packed (default :data:`LEFT_ON_WORKER`, a finished grid run's;
    a search ships ``last.pt`` too, as its runs continue from it after a kill).

    Regular files only: symbolic links (which could point anywhere on the worker) are not followed or packed.

    Raises:
        ShippingError: ``run_dir`` is not a folder.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise ShippingError(f"run folder {str(root)!r} does not exist on this worker: nothing to ship")
    files: dict[str, bytes] = {}
    for folder, dirs, names in os.walk(root):  # does not descend into linked folders
        dirs.sort()
        for file in sorted(names):
            path = Path(folder, file)
            name = path.relative_to(root).as_posix()
            if path.is_symlink() or not path.is_file() or not shipped(name, left_on_worker):
                continue
            files[name] = path.read_bytes()
    return dict(sorted(files.items()))


def unpack_run(files: Mapping[str, bytes], runs_dir: str | os.PathLike, run_id: str) -> Path:
    """Make ``runs_dir/run_id`` hold exactly ``files`` (from :func:`pack_run`); return that folder.

    Every name is checked before anything is written. The files are written (each with
    :func:`attnyolo.atomic.write_atomically`) into a hidden folder beside the run folder, which then replaces it:
    a reader never sees a mix of an earlier attempt's files and these, and a crash leaves the earlier folder (or
    none) plus a hidden leftover, never half a run folder.

    Raises:
        ShippingError: an unsafe run id or file name, or content that is not bytes.
    """
    check_run_id(run_id)
    for name, content in files.items():
        check_name(name)
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise ShippingError(f"shipped file {name!r} of run {run_id} holds {type(content).__name__}, not bytes")
    runs = Path(runs_dir)
    runs.mkdir(parents=True, exist_ok=True)
    staging = runs / f".{run_id}.incoming-{secrets.token_hex(6)}"
    try:
        staging.mkdir()
        for name, content in files.items():
            write_atomically(staging / name, lambda tmp, data=content: tmp.write_bytes(bytes(data)))
        _replace_folder(staging, runs / run_id)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return runs / run_id


def _replace_folder(new: Path, dest: Path) -> None:
    # A folder cannot be renamed over a non-empty one: the old one is moved aside first, then removed.
    old = dest.with_name(f".{dest.name}.old-{secrets.token_hex(6)}")
    had_old = dest.exists() or dest.is_symlink()
    if had_old:
        os.replace(dest, old)
    try:
        os.replace(new, dest)
    except BaseException:
        if had_old:
            os.replace(old, dest)  # put the earlier folder back
        raise
    if had_old:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def grid_token(runs_dir: str | os.PathLike) -> str:
    """The driver's side: the grid's token, kept in ``runs_dir/`` (:data:`GRID_MARKER`), created on first use.

    It lasts as long as the grid folder, so a resumed grid keeps its token, and with it each worker's scratch folder
    of a killed run (see :func:`worker_grid_dir`).
    """
    marker = Path(runs_dir) / GRID_MARKER
    if marker.is_file():
        token = marker.read_text().strip()
        if _TOKEN.fullmatch(token):
            return token
    token = secrets.token_hex(16)
    write_atomically(marker, lambda tmp: tmp.write_text(token + "\n"))
    return token


def sees_driver_folder(runs_dir: str | os.PathLike, token: str) -> bool:
    """The worker's side: whether ``runs_dir`` here is the driver's own (its marker holds ``token``) and writable."""
    marker = Path(runs_dir) / GRID_MARKER
    try:
        found = marker.read_text().strip()
    except OSError:
        return False
    return found == token and os.access(runs_dir, os.W_OK)


def worker_grid_dir(token: str) -> Path:
    """The worker's own grid folder for the grid ``token``: ``$ATTNYOLO_WORKER_DIR/<token>`` (default: the system's
    temporary folder's ``attnyolo-worker/<token>``). A run trains in its ``runs/<run_id>`` there; a finished run's
    folder is removed once packed, a killed one's stays, so the run continues from its ``last.pt`` if Ray starts it
    on this node again."""
    if not _TOKEN.fullmatch(str(token)):
        raise ShippingError(f"grid token {token!r} is not 32 hex digits (see {GRID_MARKER})")
    base = os.environ.get(WORKER_DIR_ENV) or os.path.join(tempfile.gettempdir(), "attnyolo-worker")
    return Path(base) / token


__all__ = [
    "GRID_MARKER",
    "LEFT_ON_WORKER",
    "WORKER_DIR_ENV",
    "ShippingError",
    "check_name",
    "check_run_id",
    "grid_token",
    "pack_run",
    "sees_driver_folder",
    "shipped",
    "unpack_run",
    "worker_grid_dir",
]
