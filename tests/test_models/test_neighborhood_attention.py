"""NeighborhoodAttention against a direct, per-query transcription of natten 0.14."""
import pytest
import torch
import torch.nn.functional as F

from dat.models.layers import NeighborhoodAttention
from dat.models.layers.neighborhood_attention import window_starts


def natten_window_start(index, length, kernel_size):
    """natten 0.14's get_window_start (dilation 1), as written there."""
    r = kernel_size // 2
    return max(index - r, 0) + (index + r >= length) * (length - index - r - 1)


def natten_pb_start(index, length, kernel_size):
    """natten 0.14's get_pb_start (dilation 1), as written there."""
    r = kernel_size // 2
    return r + (index < r) * (r - index) + (index + r >= length) * (length - index - 1 - r)


def direct(layer: NeighborhoodAttention, x: torch.Tensor) -> torch.Tensor:
    """One query at a time, with the DAT++ release's zero padding of small maps."""
    B, H, W, C = x.shape
    K, M = layer.kernel_size, layer.num_heads
    x = F.pad(x, (0, 0, 0, max(K - W, 0), 0, max(K - H, 0)))
    Hp, Wp = x.shape[1:3]
    q, k, v = layer.qkv(x).reshape(B, Hp, Wp, 3, M, C // M).unbind(3)  # (B, Hp, Wp, M, d)
    rows = []
    for i in range(Hp):
        si, pi = natten_window_start(i, Hp, K), natten_pb_start(i, Hp, K)
        cols = []
        for j in range(Wp):
            sj, pj = natten_window_start(j, Wp, K), natten_pb_start(j, Wp, K)
            keys = k[:, si:si + K, sj:sj + K].reshape(B, K * K, M, -1)
            values = v[:, si:si + K, sj:sj + K].reshape(B, K * K, M, -1)
            logits = torch.einsum('bmd,bnmd->bmn', q[:, i, j] * layer.scale, keys)
            logits = logits + layer.rpb[:, pi:pi + K, pj:pj + K].reshape(M, K * K)
            cols.append(torch.einsum('bmn,bnmd->bmd', logits.softmax(-1), values).flatten(1))
        rows.append(torch.stack(cols, 1))
    return layer.proj(torch.stack(rows, 1)[:, :H, :W])


@pytest.mark.parametrize('size', [(7, 7), (9, 13), (11, 8), (5, 9), (3, 4), (1, 1)])
def test_matches_natten_forward_and_backward(size):
    torch.manual_seed(0)
    layer = NeighborhoodAttention(8, 2, kernel_size=7).double()
    x = torch.randn(2, *size, 8, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    grad = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, layer.qkv.weight, layer.rpb], grad)

    expected = direct(layer, x)
    expected_grads = torch.autograd.grad(expected, [x, layer.qkv.weight, layer.rpb], grad)
    assert out.shape == (2, *size, 8)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_border_windows_shift_inside():
    # a row of 9 with K = 5: queries 0-2 share the first window, 6-8 the last
    assert window_starts(9, 5, 'cpu').tolist() == [0, 0, 0, 1, 2, 3, 4, 4, 4]
    assert [natten_window_start(i, 9, 5) for i in range(9)] == [0, 0, 0, 1, 2, 3, 4, 4, 4]


def test_bad_arguments():
    with pytest.raises(ValueError, match='not divisible'):
        NeighborhoodAttention(10, 3)
    with pytest.raises(ValueError, match='odd'):
        NeighborhoodAttention(8, 2, kernel_size=6)
