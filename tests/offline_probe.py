"""Run in a subprocess by test_runtime_offline.py: block every network call, then train, validate, predict
and export a nano model on the embedded data. Prints one JSON line with every attempted connection.

Import order is the point of this file (guard first, then attnyolo, then Ultralytics): keep isort away.
"""
# ruff: noqa: I001, E402

import json
import socket
import sys

attempts: list[str] = []


def _refuse(what):
    def blocked(*args, **kwargs):
        attempts.append(f"{what}{args[1:] if what.startswith('socket.') else args}")
        raise OSError(f"network blocked by test: {what}")

    return blocked


_connect = socket.socket.connect


def guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        attempts.append(f"connect{address}")
        raise OSError("network blocked by test: connect")
    return _connect(self, address)  # local AF_UNIX sockets (multiprocessing) stay allowed


socket.socket.connect = guarded_connect
socket.socket.connect_ex = lambda self, address: guarded_connect(self, address)
for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "create_connection"):
    setattr(socket, name, _refuse(name))

work = sys.argv[1]
if work == "--import-only":  # harness self-check: is an attempt really seen?
    import attnyolo  # noqa: F401
    import ultralytics  # noqa: F401

    print(json.dumps({"attempts": attempts}))
    sys.exit(0)

import attnyolo  # noqa: F401  (first: it switches Ultralytics to offline before Ultralytics loads)
from attnyolo.data import default_dataset
from ultralytics import YOLO

data = default_dataset()
model = YOLO("yolov8n.yaml")
model.train(
    data=str(data),
    epochs=1,
    imgsz=128,
    batch=8,
    fraction=0.25,
    workers=0,
    device="cpu",
    project=work,
    name="train",
    plots=True,
    verbose=False,
    amp=True,
)
best = YOLO(f"{work}/train/weights/best.pt")
metrics = best.val(data=str(data), imgsz=128, batch=8, device="cpu", plots=True, project=work, name="val")
image = next((data.parent / "images" / "val").glob("*.jpg"))
pred = best.predict(str(image), imgsz=128, device="cpu", save=True, project=work, name="predict")
onnx = best.export(format="onnx", imgsz=128, opset=17, simplify=True)
print(
    json.dumps({"attempts": attempts, "map50": float(metrics.box.map50), "predictions": len(pred), "onnx": str(onnx)})
)
