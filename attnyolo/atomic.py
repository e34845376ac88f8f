"""Writing a file atomically, with the permissions the user's umask gives.

A reader (or a crash) never sees half a file: the content goes to a temporary file in the destination's folder,
which is then renamed over the destination. ``tempfile.mkstemp`` would create that file with mode 0600, which
the rename keeps; the temporary file is created here with ``os.open(..., 0o666)`` instead, so the kernel
applies the umask exactly as for any file the user writes (0644 under umask 022), like the files Ultralytics
writes beside it.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Create or replace ``path`` with what ``write(tmp)`` writes to a temporary path beside it.

    Args:
        path: the destination; its folder is created if needed.
        write: writes the whole content to the path it is given (``torch.save(obj, tmp)``, ``save_file(..., tmp)``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # mode from the umask, as open() gives
    try:
        mode = stat.S_IMODE(tmp.stat().st_mode)
        write(tmp)
        if stat.S_IMODE(tmp.stat().st_mode) != mode:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
