import numpy as np
import pytest
import torch

from ssp_detect.models.srm import SRMFilter, srm_kernel

F1 = np.array([[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]]) / 4
F2 = np.array([[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]]) / 12
F3 = np.array([[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]) / 2


def test_kernel_values_and_layout():
    k = srm_kernel().numpy()
    assert k.shape == (3, 3, 5, 5)
    for c in range(3):
        np.testing.assert_allclose(k[0, c], F1)
        np.testing.assert_allclose(k[1, c], F2)
        np.testing.assert_allclose(k[2, c], F3)


def test_impulse_response_sums_channels():
    # A unit impulse at (7, 7) in the green channel only: each output channel shows its filter.
    x = torch.zeros(1, 3, 15, 15)
    x[0, 1, 7, 7] = 1.0
    y = SRMFilter()(x)[0].numpy()
    for k, f in enumerate((F1, F2, F3)):
        np.testing.assert_allclose(y[k, 5:10, 5:10], f[::-1, ::-1], atol=1e-7)
    # The same impulse in all three channels triples the response.
    y3 = SRMFilter()(x[:, 1:2].repeat(1, 3, 1, 1))[0].numpy()
    np.testing.assert_allclose(y3, 3 * y, atol=1e-6)


def test_flat_and_linear_ramps_give_zero_inside():
    ramp = torch.arange(20, dtype=torch.float32).view(1, 1, 1, 20).repeat(1, 3, 20, 1) * 0.1 + 0.5
    y = SRMFilter()(ramp)[0]
    assert y[:, 2:-2, 2:-2].abs().max().item() < 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
def test_srm_stays_fp32_under_bf16_autocast_on_cuda():
    x = torch.randn(2, 3, 32, 32, device="cuda") * 1e-3
    f = SRMFilter().cuda()
    ref = f(x.double().float())
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = f(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-8)
