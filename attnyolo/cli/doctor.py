"""What ``attnyolo doctor`` reports: versions, device, offline set-up, folders."""

from __future__ import annotations

import os
import platform
from importlib import metadata

from attnyolo import runtime


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def report() -> dict[str, str]:
    import torch

    import attnyolo
    from attnyolo.registry import available

    state = runtime.status()
    if torch.cuda.is_available():
        device = f"cuda: {torch.cuda.get_device_name(0)} (x{torch.cuda.device_count()})"
    else:
        device = f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
    fonts = runtime.ultralytics_config_dir()
    auto = os.environ.get("YOLO_AUTOINSTALL")
    return {
        "attnyolo": attnyolo.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "ultralytics": _version("ultralytics"),
        "device": device,
        "offline (YOLO_OFFLINE)": f"{'active' if state['offline'] else 'OFF'} = {os.environ.get('YOLO_OFFLINE')}",
        "auto-install (YOLO_AUTOINSTALL)": f"{'ON' if state['autoinstall'] else 'off'} = {auto}",
        "import order": "ultralytics imported BEFORE attnyolo: offline defaults not applied"
        if state["ultralytics_imported_first"]
        else "ok (attnyolo configured Ultralytics before it loaded)",
        "set by you": ", ".join(f"{k}={v}" for k, v in state["user_set"].items()) or "(nothing: attnyolo defaults)",
        "ultralytics config dir": str(state["config_dir"]),
        "local fonts": "yes" if all((fonts / n).exists() for n in runtime.FONT_NAMES) else "missing",
        "cache dir": str(runtime.cache_dir()),
        "zoo modules": str(len(available())),
    }
