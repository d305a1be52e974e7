"""NeighborhoodAttention against a direct, per-query transcription of natten 0.14."""
import pytest
import torch
import torch.nn.functional as F

from dat.models.layers import NeighborhoodAttention
from dat.models.layers.neighborhood_attention import TILE, tile_axis, window_starts


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


# Sizes below the window, one tile, several tiles with every remainder modulo the tile
@pytest.mark.parametrize('size', [(7, 7), (9, 13), (11, 8), (5, 9), (3, 4), (1, 1), (20, 17),
                                  (16, 30), (12, 25), (18, 10)])
@pytest.mark.parametrize('impl', ['reference', 'sdpa'])
def test_matches_natten_forward_and_backward(size, impl):
    torch.manual_seed(0)
    layer = NeighborhoodAttention(8, 2, kernel_size=7, attn_impl=impl).double()
    assert layer.kernel(torch.device('cpu')) == impl
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


@pytest.mark.parametrize('kernel_size', [3, 5, 7])
def test_tiles_hold_every_window(kernel_size):
    """Every query of the 'sdpa' kernel's tiles finds its whole window in its tile's keys,
    for every length and remainder modulo the tile."""
    for length in range(kernel_size, 3 * TILE + 2):
        pad, n, keys, inside = tile_axis(length, kernel_size, TILE, 'cpu')
        starts = window_starts(length, kernel_size, 'cpu')
        assert (n - 1) * TILE < length + pad <= n * TILE
        for query in range(length):
            tile, u = divmod(query + pad, TILE)
            window = keys[tile][inside[tile, u]].tolist()
            assert window == list(range(starts[query], starts[query] + kernel_size))


def test_sdpa_kernel_stores_no_gathered_keys():
    """The reference stores K*K = 49 copies of the keys and values for the backward; the
    tiled kernel stores the input, q, k and v (its halos and masks are rebuilt in the
    backward): about 5 times the input, where storing the halos and masks took 16."""
    torch.manual_seed(0)
    x = torch.randn(1, 56, 56, 64, requires_grad=True)
    saved = {}
    for impl in ('reference', 'sdpa'):
        layer = NeighborhoodAttention(64, 2, attn_impl=impl)
        storages = {}

        def pack(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            layer(x)
        saved[impl] = sum(storages.values()) / x.numel() / x.element_size()
    assert saved['reference'] > 2 * 49  # K and V gathered: 49 copies each
    assert saved['sdpa'] < 6, saved


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_sdpa_kernel_in_low_precision(dtype):
    torch.manual_seed(0)
    reference = NeighborhoodAttention(32, 2, attn_impl='reference')
    fast = NeighborhoodAttention(32, 2, attn_impl='sdpa')
    fast.load_state_dict(reference.state_dict())
    x = torch.randn(2, 23, 30, 32)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16,
                                         enabled=dtype == torch.bfloat16):
        got, want = fast(x).float(), reference(x).float()
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)
