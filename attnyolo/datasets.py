"""Checking a user's data YAML before any training starts, with one-line errors."""

from __future__ import annotations

from pathlib import Path

import yaml

from attnyolo.errors import DataError


def check_data(data: str | Path) -> dict:
    """Validate an Ultralytics detection data YAML and return Ultralytics' resolved dataset dict.

    Raises:
        DataError: the file is missing, unreadable, not YAML, not a mapping, lacks ``train``/``val``/
            ``names``, or Ultralytics' checker rejects it (e.g. the image folders do not exist).
    """
    path = Path(data)
    if not path.is_file():
        raise DataError(f"data YAML {str(path)!r} does not exist")
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"data YAML {str(path)!r} cannot be read: {e}") from None
    except yaml.YAMLError as e:
        raise DataError(f"data YAML {str(path)!r} is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(content, dict):
        raise DataError(f"data YAML {str(path)!r} must be a mapping with train, val and names keys")
    missing = [k for k in ("train", "val") if k not in content] + (
        [] if "names" in content or "nc" in content else ["names"]
    )
    if missing:
        raise DataError(f"data YAML {str(path)!r} lacks {', '.join(missing)}")
    from ultralytics.data.utils import check_det_dataset

    try:
        return check_det_dataset(str(path), autodownload=False)
    except (FileNotFoundError, SyntaxError, ValueError, KeyError) as e:
        raise DataError(f"data YAML {str(path)!r} rejected: {' '.join(str(e).split())}") from None
