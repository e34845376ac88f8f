"""The zoo's shared parts (``attention/_base.py``): pooling fast paths and the ``x * s`` hook."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnyolo.attention._base import ScalesInput, channel_max, global_max_pool, mean_pool
from attnyolo.registry import create, specs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_pools_without_gradient_give_the_training_paths_values_bit_for_bit(dtype):
    x = torch.randn(2, 8, 9, 7, generator=torch.Generator().manual_seed(0)).to(dtype)
    xg = x.clone().requires_grad_()
    with torch.no_grad():
        fast = [mean_pool(x, (2, 3)), mean_pool(x, 1), channel_max(x), global_max_pool(x)]
    slow = [mean_pool(xg, (2, 3)), mean_pool(xg, 1), channel_max(xg), global_max_pool(xg)]
    for a, b in zip(fast, slow, strict=True):
        assert torch.equal(a, b.detach())
    want = [x.float().mean((2, 3), keepdim=True), x.amax(1, keepdim=True), F.adaptive_max_pool2d(x.float(), 1)]
    torch.testing.assert_close(fast[0].float(), want[0], rtol=1e-3, atol=1e-3)
    assert torch.equal(fast[2], want[1]) and torch.equal(fast[3].float(), want[2])


SCALES = [s.name for s in specs() if issubclass(s.cls, ScalesInput)]


def test_the_channel_and_spatial_gates_declare_their_scale():
    assert {"se", "ese", "eca", "gct", "srm", "fca", "sam", "ul_spatial", "ge"} <= set(SCALES)


@pytest.mark.parametrize("name", SCALES)
def test_a_scales_input_module_outputs_x_times_its_scale(name):
    # forward must be the mixin's (nothing after the product), so the adapter may put gamma on s
    m = create(name, 16).eval()
    assert type(m).forward is ScalesInput.forward
    x = torch.randn(2, 16, 8, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        s = m.attention_scale(x)
        assert s.numel() < x.numel() or name == "ge"
        assert torch.equal(m(x), x * s)
