"""Neighbourhood attention: the N block of DAT++ (Xia et al., arXiv 2309.01430).

Each query attends to the ``K x K`` keys around it (K = 7 in DAT++), with a learnt
relative position bias. The semantics are those of natten 0.14 (dilation 1), which the
DAT++ release uses:

- The window is shifted, not cut, at the border: along an axis of length L the keys of
  query ``i`` are ``s_i, ..., s_i + K - 1`` with ``s_i = clamp(i - K // 2, 0, L - K)``,
  so every query sees exactly K x K keys.
- The bias of a query-key pair is ``rpb[h, dy + K - 1, dx + K - 1]``, where ``(dy, dx)``
  is the key's position minus the query's; ``rpb`` is (heads, 2K - 1, 2K - 1).
- A map smaller than the window (H < K or W < K) is padded with zeros at the bottom and
  right to at least K x K before ``qkv``, as the release does. The padded tokens are keys
  like any other (their keys and values are the ``qkv`` bias); the output is cropped back.

Two kernels (``attn_impl``, see :mod:`dat.models.layers.common`):

- ``'reference'`` (:func:`neighborhood_attention`) gathers each query's keys, so it stores
  K*K copies of the keys and values (49 for K = 7): the plain transcription of the above.
- ``'sdpa'`` (:func:`blocked_neighborhood_attention`, ``'auto'`` on every device): the map is
  cut into tiles of ``T x T`` queries (:data:`TILE`); each tile attends to the
  ``(T + K - 1)^2`` keys around it (its halo) with ``F.scaled_dot_product_attention``, and an
  additive mask gives every pair its bias and -inf where the key is outside the query's
  window. The work is dense and fused. In training, the halos (about 3 copies of K and V
  for T = 8) and the (T*T, halo) masks are not stored: the backward rebuilds them and runs
  the tiles' forward again (``torch.utils.checkpoint``, as flash attention recomputes its
  scores), so a block stores q, k and v only. Its numbers equal the reference's up to
  rounding (``tests/test_models/test_neighborhood_attention.py``).
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from timm.layers import trunc_normal_
from torch.utils.checkpoint import checkpoint

from . import fast_attention
from .common import AttentionImplMixin, SizeCache, is_exporting
from .fast_attention import aligned_mask

#: Side T of the query tiles of the ``'sdpa'`` kernel. Each query attends to (T + K - 1)^2
#: keys, of which K^2 are in its window; T = 8 stored the least at DAT-T++'s 896 px sizes
#: (docs/benchmarks.md).
TILE = 8
#: The tile plans (key indices and window masks, by height, width, K, T and device) that a
#: layer keeps (:attr:`NeighborhoodAttention.tile_plans`); the backbone gives its N layers one
#: cache, which one input size fills with one plan per stage.
TILE_PLAN_ENTRIES = 8


def window_starts(length: int, kernel_size: int, device: torch.device) -> torch.Tensor:
    """natten's first key index ``s_i`` of every query along one axis (length >= K)."""
    index = torch.arange(length, device=device)
    return (index - kernel_size // 2).clamp(0, length - kernel_size)


def neighborhood_index(height: int, width: int, kernel_size: int,
                       device: torch.device) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where each query's K*K keys are, and which bias entries they take.

    Returns:
        tuple: ``keys`` (H*W, K*K), flat indices into the H*W map, query-major and then
        (key row, key column); ``bias_y`` (H, 1, K, 1) and ``bias_x`` (1, W, 1, K), the
        row and column of ``rpb`` for each pair, which broadcast to (H, W, K, K).
    """
    K = kernel_size
    offsets = torch.arange(K, device=device)
    rows = window_starts(height, K, device)[:, None] + offsets  # (H, K) key rows
    cols = window_starts(width, K, device)[:, None] + offsets  # (W, K) key columns
    keys = rows[:, None, :, None] * width + cols[None, :, None, :]  # (H, W, K, K)
    bias_y = rows - torch.arange(height, device=device)[:, None] + K - 1  # dy + K - 1
    bias_x = cols - torch.arange(width, device=device)[:, None] + K - 1
    return (keys.reshape(height * width, K * K), bias_y[:, None, :, None],
            bias_x[None, :, None, :])


def neighborhood_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           rpb: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Reference neighbourhood attention: (B, M, H*W, d) each -> (B, M, H*W, d).

    ``q`` is already scaled; ``rpb`` is (M, 2K - 1, 2K - 1); the map is at least K x K.
    """
    M, K = rpb.shape[0], (rpb.shape[-1] + 1) // 2
    keys, bias_y, bias_x = neighborhood_index(height, width, K, q.device)
    bias = rpb[:, bias_y, bias_x].reshape(M, height * width, K * K)
    attn = torch.einsum('bmnd,bmnkd->bmnk', q, k[:, :, keys]) + bias
    return torch.einsum('bmnk,bmnkd->bmnd', attn.softmax(dim=-1), v[:, :, keys])


def axis_tiles(length: int, kernel_size: int, tile: int) -> Tuple[int, int]:
    """``pad`` and the number of tiles n of :func:`tile_axis`, from the sizes alone (Python
    ints, so that torch.compile reads them as shapes, not as tensor data)."""
    T, r = tile, kernel_size // 2
    pad = 0 if length % T == 0 or length % T > r else r + 1 - length % T
    return pad, (length + pad + T - 1) // T


def tile_axis(length: int, kernel_size: int, tile: int,
              device: torch.device) -> Tuple[int, int, torch.Tensor, torch.Tensor]:
    """How :func:`blocked_neighborhood_attention` tiles one axis of length L (>= K).

    Tile t holds the queries ``t * T - pad + u`` (u < T) and the keys
    ``t * T - pad - K // 2 + l`` (l < T + K - 1). ``pad`` queries (padding) come before the
    first real one, so that the last tile has no real query whose shifted window starts
    above its halo: it holds all T, or more than ``K // 2``, real queries.

    Returns:
        tuple: ``pad``, the number of tiles n, ``keys`` (n, T + K - 1), the key indices
        (clamped into the map; those outside are masked), and ``inside`` (n, T, T + K - 1),
        whether the key is in the query's window.
    """
    K, T, r = kernel_size, tile, kernel_size // 2
    pad, n = axis_tiles(length, kernel_size, tile)
    queries = torch.arange(n * T, device=device) - pad
    starts = window_starts(length, K, device)[queries.clamp(0, length - 1)].view(n, T, 1)
    keys = (torch.arange(n, device=device)[:, None] * T - pad - r
            + torch.arange(T + K - 1, device=device))
    inside = (keys[:, None, :] >= starts) & (keys[:, None, :] < starts + K)
    return pad, n, keys.clamp(0, length - 1), inside


def tile_plan(height: int, width: int, kernel_size: int, tile: int, device: torch.device,
              plans: Optional[SizeCache] = None):
    """The padding (top, left), tile counts (rows, columns), flat key indices
    (n_tiles * halo,) and window mask (n_tiles, T*T, halo) of a (height, width) map;
    kept in ``plans`` (built each time without one)."""
    def build():
        pad_y, n_y, keys_y, inside_y = tile_axis(height, kernel_size, tile, device)
        pad_x, n_x, keys_x, inside_x = tile_axis(width, kernel_size, tile, device)
        keys = keys_y[:, None, :, None] * width + keys_x[None, :, None, :]  # (ny, nx, L, L)
        inside = inside_y[:, None, :, None, :, None] & inside_x[None, :, None, :, None, :]
        return keys.reshape(-1), rearrange(inside, 'ny nx u v l m -> (ny nx) (u v) (l m)')
    keys, inside = build() if plans is None else \
        plans.get((height, width, kernel_size, tile, device), build)
    (pad_y, n_y), (pad_x, n_x) = (axis_tiles(n, kernel_size, tile) for n in (height, width))
    return [pad_y, pad_x, n_y, n_x], keys, inside


def blocked_neighborhood_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                   rpb: torch.Tensor, scale: float, tile: int = TILE,
                                   plans: Optional[SizeCache] = None) -> torch.Tensor:
    """Neighbourhood attention by tiles with SDPA: (B, H, W, M, d) each -> (B, H, W, M, d).

    ``q`` is not scaled (``scale`` is SDPA's); ``rpb`` is (M, 2K - 1, 2K - 1); the map is at
    least K x K. Same numbers as :func:`neighborhood_attention` up to rounding.
    """
    B, H, W, M, d = q.shape
    K, T = (rpb.shape[-1] + 1) // 2, tile
    L = T + K - 1
    (pad_y, pad_x, n_y, n_x), keys, inside = tile_plan(H, W, K, T, q.device, plans)
    # The bias of query (u, v) and key (l, m) of a tile: rpb[dy + K - 1, dx + K - 1] with
    # dy = l - K // 2 - u, the same in every tile (pairs out of range are masked anyway).
    index = (torch.arange(L, device=q.device) - torch.arange(T, device=q.device)[:, None]
             + K // 2).clamp(0, 2 * K - 2)  # (T, L)
    bias = rpb[:, index[:, None, :, None], index[None, :, None, :]]  # (M, T, T, L, L)
    bias = rearrange(bias, 'm u v l m2 -> m 1 (u v) (l m2)').to(q.dtype)
    # (1, M * n_tiles, T*T, L*L): heads and tiles in SDPA's head dimension (its fused kernels
    # take 4-D inputs), one mask for every image, rows aligned for the fused kernels.
    mask = aligned_mask(bias.masked_fill(~inside, float('-inf')).flatten(0, 1)[None])

    q = F.pad(q, (0, 0, 0, 0, pad_x, n_x * T - W - pad_x, pad_y, n_y * T - H - pad_y))
    q = rearrange(q, 'b (ny u) (nx v) m d -> b (m ny nx) (u v) d', u=T, v=T)
    k, v = (rearrange(t, 'b h w m d -> b m (h w) d')[:, :, keys] for t in (k, v))
    k, v = (t.view(B, M * n_y * n_x, L * L, d) for t in (k, v))
    out = fast_attention.attention(q, k, v, mask, scale)
    out = rearrange(out, 'b (m ny nx) (u v) d -> b (ny u) (nx v) m d', m=M, nx=n_x, u=T)
    return out[:, pad_y:pad_y + H, pad_x:pad_x + W]


class NeighborhoodAttention(AttentionImplMixin, nn.Module):
    """Multi-head neighbourhood attention over a (B, H, W, C) map, as natten 0.14.

    Args:
        dim (int): Channels C.
        num_heads (int): Heads M.
        kernel_size (int): Neighbourhood side K (odd). Default: 7.
        attn_impl (str): ``'reference'`` or ``'sdpa'`` (see the module's docstring);
            ``'auto'`` is ``'sdpa'`` on every device. Default: ``'auto'``.
        tile_plans (SizeCache, optional): Where the ``'sdpa'`` kernel keeps its tile plans,
            shared by the layers that are given the same cache. Default: one of its own.

    Parameter names (those of natten's ``NeighborhoodAttention2D``): ``qkv``, ``proj``
    (linear layers) and ``rpb`` (M, 2K - 1, 2K - 1).
    """

    def __init__(self, dim: int, num_heads: int, kernel_size: int = 7, attn_impl: str = 'auto',
                 tile_plans: Optional[SizeCache] = None):
        super().__init__()
        self.init_attention_impl(attn_impl)
        self.tile_plans = SizeCache(TILE_PLAN_ENTRIES) if tile_plans is None else tile_plans
        if dim % num_heads:
            raise ValueError(f'dim={dim} is not divisible by num_heads={num_heads}')
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f'kernel_size must be odd and at least 3, got {kernel_size}')
        self.num_heads = num_heads
        self.kernel_size = kernel_size
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.rpb = nn.Parameter(torch.zeros(num_heads, 2 * kernel_size - 1, 2 * kernel_size - 1))
        trunc_normal_(self.rpb, std=0.02, a=-2.0, b=2.0)  # natten's initialisation
        self.proj = nn.Linear(dim, dim)

    # Exact up to rounding, faster and far lighter than the gathers on the CPU too.
    auto_order = {'cuda': ('sdpa', 'reference'), 'cpu': ('sdpa', 'reference')}

    def can_run_sdpa(self, device_type: str, dtype: torch.dtype, grad: bool):
        """As every SDPA kernel, and not under TorchScript tracing (the legacy ONNX
        exporter): its tile plan follows the size, which a traced graph must not fix."""
        if torch.jit.is_tracing():
            return 'its tile plan depends on the input size, which TorchScript tracing fixes'
        return super().can_run_sdpa(device_type, dtype, grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, H, W, C) -> (B, H, W, C)."""
        B, H, W, C = x.shape
        K, M = self.kernel_size, self.num_heads
        if torch.jit.is_tracing():  # traced sizes are tensors
            x = F.pad(x, (0, 0, 0, (K - W).clamp(min=0), 0, (K - H).clamp(min=0)))
        elif is_exporting() or H < K or W < K:  # zero padding up to the window, as the
            # release does; exported, with sizes that stay symbolic (no branch on H or W)
            x = F.pad(x, (0, 0, 0, torch.sym_max(K - W, 0), 0, torch.sym_max(K - H, 0)))
        padded_h, padded_w = x.shape[1:3]
        qkv = self.qkv(x).reshape(B, padded_h, padded_w, 3, M, C // M)
        # The tiles' layout depends on the size; traced or exported (ONNX, torch.export, any
        # size), the gathers of the reference kernel follow the size instead.
        if self.kernel_for(x) == 'sdpa':  # exported: the reference (export_kernel)
            q, k, v = qkv.unbind(3)
            if torch.is_grad_enabled() and not torch.compiler.is_compiling():
                # The halos and masks are rebuilt in the backward (as flash attention
                # recomputes its scores), so only q, k and v are stored.
                out = checkpoint(blocked_neighborhood_attention, q, k, v, self.rpb,
                                 self.scale, TILE, self.tile_plans, use_reentrant=False)
            else:
                out = blocked_neighborhood_attention(q, k, v, self.rpb, self.scale, TILE,
                                                     self.tile_plans)
        else:
            q, k, v = rearrange(qkv, 'b h w three m d -> three b m (h w) d').unbind(0)
            out = neighborhood_attention(q * self.scale, k, v, self.rpb, padded_h, padded_w)
            out = rearrange(out, 'b m (h w) d -> b h w m d', h=padded_h)
        return self.proj(out[:, :H, :W].reshape(B, H, W, C))
