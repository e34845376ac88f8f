"""The 2022-2024 modules exported once with dynamic batch, H and W (Ultralytics' ``export(dynamic=True)``) give
PyTorch's outputs in onnxruntime at other sizes, odd and smaller than their pooling grids included."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from test_defaults_fit_yolo_layers import RECENT

from attnyolo.registry import create

SIZES = [(2, 24, 32), (1, 13, 7), (1, 3, 2)]


@pytest.mark.parametrize("name", RECENT)
def test_dynamic_axes_export_runs_at_other_sizes(name):
    import onnxruntime as ort

    torch.manual_seed(0)
    m = create(name, 32).eval()
    buf = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            m,
            (torch.randn(1, 32, 20, 20),),
            buf,
            opset_version=17,
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": axes, "y": axes},
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(1)
    for b, h, w in SIZES:
        x = torch.randn(b, 32, h, w, generator=g)
        (got,) = session.run(None, {"x": x.numpy()})
        with torch.no_grad():
            want = m(x).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3, err_msg=f"{name} at {b}x32x{h}x{w}")
