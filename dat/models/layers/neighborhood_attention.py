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

The plain PyTorch code here (:func:`neighborhood_attention`) gathers each query's keys, so
it stores K*K copies of the keys and values: it is the reference, not a fast kernel.
"""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_

from .common import check_attention_impl


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


class NeighborhoodAttention(nn.Module):
    """Multi-head neighbourhood attention over a (B, H, W, C) map, as natten 0.14.

    Args:
        dim (int): Channels C.
        num_heads (int): Heads M.
        kernel_size (int): Neighbourhood side K (odd). Default: 7.
        attn_impl (str): Checked and kept like the other layers' (see
            :mod:`dat.models.layers.common`); every value runs the reference
            :func:`neighborhood_attention`, since no fused kernel exists yet. Default: 'auto'.

    Parameter names (those of natten's ``NeighborhoodAttention2D``): ``qkv``, ``proj``
    (linear layers) and ``rpb`` (M, 2K - 1, 2K - 1).
    """

    def __init__(self, dim: int, num_heads: int, kernel_size: int = 7, attn_impl: str = 'auto'):
        super().__init__()
        # One implementation so far (the reference); the choice is kept for the config.
        self.attn_impl = check_attention_impl(attn_impl)
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, H, W, C) -> (B, H, W, C)."""
        B, H, W, C = x.shape
        K, M = self.kernel_size, self.num_heads
        if torch.jit.is_tracing():  # traced sizes (ONNX export) stand for any size
            x = F.pad(x, (0, 0, 0, (K - W).clamp(min=0), 0, (K - H).clamp(min=0)))
        elif H < K or W < K:  # zero padding up to the window, as the release does
            x = F.pad(x, (0, 0, 0, max(K - W, 0), 0, max(K - H, 0)))
        padded_h, padded_w = x.shape[1:3]
        qkv = self.qkv(x).reshape(B, padded_h * padded_w, 3, M, C // M)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, M, N, d)
        out = neighborhood_attention(q * self.scale, k, v, self.rpb, padded_h, padded_w)
        out = out.transpose(1, 2).reshape(B, padded_h, padded_w, C)[:, :H, :W]
        return self.proj(out)
