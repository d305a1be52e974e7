"""Window attention: the local (L) and shifted-window (S) blocks of DAT.

Both split the feature map into ``w x w`` windows and run multi-head self-attention with
a Swin-style relative position bias inside each window. The S block first rolls the map
by ``ceil(w / 2)`` (as the 2022 release does; Swin uses ``w // 2``) and masks out pairs
of tokens that came from different regions.

Any feature-map size: the map is padded at the bottom and right to a multiple of ``w``.
Padded tokens are masked out as keys, so real tokens never attend to padding; the shift
mask is built for the padded map. Without padding, the numbers are the 2022 ones.

The masks depend only on the map size, the window and the shift; a layer keeps them in a
small LRU cache (:attr:`WindowAttention.mask_cache`), which the backbone shares between its
window layers, so memory does not grow with the number of input sizes.

Exported with ``torch.export`` (which torch's ONNX exporter runs), the layer runs
:meth:`WindowAttention.forward_exported`: the reference math for any H and W (always padded
and masked), written so that the exporter needs no guard on the size.

``attn_impl`` (see :mod:`dat.models.layers.common`): ``'reference'`` is the plain PyTorch
code below (``'auto'`` off CUDA); ``'sdpa'`` (``'auto'`` on CUDA) runs the same math with
``F.scaled_dot_product_attention``, the bias and mask passed as ``attn_mask``.
"""
import math
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from mmengine.logging import MMLogger
from timm.layers import gen_relative_position_index, trunc_normal_

from .common import AttentionImplMixin, SizeCache
from .fast_attention import window_sdpa

#: Logit added to masked pairs, as in the 2022 release.
MASK_VALUE = -100.0
#: The window masks a mask cache keeps, keyed by (window, shift, height, width, device).
#: One forward of DAT-T/S/B at one input size asks its backbone's cache for at most 6 (L and
#: S blocks of stages 1-2, L blocks of stages 3-4), so a fixed-size run builds each mask once
#: and a multi-scale run holds the masks of about one input size.
MASK_CACHE_ENTRIES = 8


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, w * w, C), the windows row by row."""
    return rearrange(x, 'b (nh h) (nw w) c -> (b nh nw) (h w) c', h=window_size, w=window_size)


def window_reverse(windows: torch.Tensor, window_size: int, height: int,
                   width: int) -> torch.Tensor:
    """(B * nW, w * w, C) -> (B, H, W, C)."""
    return rearrange(windows, '(b nh nw) (h w) c -> b (nh h) (nw w) c', h=window_size,
                     nh=height // window_size, nw=width // window_size)


def resize_relative_position_table(table: torch.Tensor, window_size: int) -> torch.Tensor:
    """Bicubic resize of a ((2w'-1)^2, heads) table to window size w."""
    old = int(math.isqrt(table.shape[0]))
    new = 2 * window_size - 1
    grid = table.T.reshape(1, -1, old, old).float()
    grid = F.interpolate(grid, size=(new, new), mode='bicubic', align_corners=False)
    return grid.reshape(-1, new * new).T.to(table.dtype).contiguous()


def window_counts(height, width, window_size: int):
    """The windows (rows, columns) of a (height, width) map padded to whole windows.

    Exported (``torch.export``), at least 2 each: a count that may be 1 would make the
    exporter guard on it at every view of a tensor with that axis (a size-1 axis has any
    stride), i.e. on the input size. The extra windows are padding, masked out as keys like
    any padding, so the real tokens attend to what they attend to in eager mode; shifted
    windows too (the map's wrapped-around bands stay apart, now by padding)."""
    w = window_size
    rows, cols = (height + w - 1) // w, (width + w - 1) // w
    if torch.compiler.is_exporting():
        rows, cols = torch.sym_max(rows, 2), torch.sym_max(cols, 2)
    return rows, cols


def build_window_grid_mask(height: int, width: int, window_size: int, shift_size: int,
                           device: torch.device) -> torch.Tensor:
    """The additive mask of every window of a (height, width) map, (nh, nw, N, N): the
    mask of :func:`build_window_mask` with the windows' rows and columns apart."""
    w, s = window_size, shift_size
    nh, nw = window_counts(height, width, w)
    padded_h, padded_w = nh * w, nw * w
    rows = torch.arange(padded_h, device=device)
    cols = torch.arange(padded_w, device=device)
    padding = (rows >= height)[:, None] | (cols >= width)[None, :]
    if s:
        # Bands [0, -w), [-w, -s), [-s, end) of each axis are 0, 1, 2; region 3 * row
        # band + column band (no slicing, so no empty slice when the map is one window).
        row_band = (rows >= padded_h - w).long() + (rows >= padded_h - s).long()
        col_band = (cols >= padded_w - w).long() + (cols >= padded_w - s).long()
        region = row_band[:, None] * 3 + col_band[None, :]
        padding = torch.roll(padding, (-s, -s), dims=(0, 1))
    else:
        region = torch.zeros_like(padding, dtype=torch.long)

    def windows(grid):  # (nh * w, nw * w) -> (nh, nw, N), each window row by row
        grid = grid.unflatten(0, (nh, w)).unflatten(2, (nw, w)).permute(0, 2, 1, 3)
        return grid.reshape(nh, nw, w * w)

    region, padding = windows(region), windows(padding)
    blocked = (region[..., :, None] != region[..., None, :]) | padding[..., None, :]
    return torch.zeros(blocked.shape, device=device).masked_fill(blocked, MASK_VALUE)


def build_window_mask(height: int, width: int, window_size: int, shift_size: int,
                      device: torch.device, always: bool = False) -> Optional[torch.Tensor]:
    """The mask of :meth:`WindowAttention.attention_mask`, (nW, N, N), built (not cached).
    With ``always``, an all-zero mask rather than None where nothing is masked; ``height``
    and ``width`` may then be traced sizes (ONNX export: the mask follows the input size)."""
    w, s = window_size, shift_size
    # Rounded up without negative sizes (see the padding in forward).
    padded_h, padded_w = (height + w - 1) // w * w, (width + w - 1) // w * w
    if not always and s == 0 and (padded_h, padded_w) == (height, width):
        return None
    return build_window_grid_mask(height, width, w, s, device).flatten(0, 1)


class WindowAttention(AttentionImplMixin, nn.Module):
    """Multi-head self-attention in (optionally shifted) windows of a (B, H, W, C) map.

    Args:
        dim (int): Channels C.
        num_heads (int): Heads.
        window_size (int): Window side w.
        shift (bool): Shift the windows by ``ceil(w / 2)`` (the S block). Default: False.
        attn_impl (str): ``'auto'``, ``'reference'`` or ``'sdpa'``; see the module's
            docstring. Default: ``'auto'``.
        mask_cache (SizeCache, optional): Where the layer keeps its masks, shared by the
            layers that are given the same cache. Default: one of its own.

    Parameter names: ``qkv``, ``proj`` (linear layers) and
    ``relative_position_bias_table`` ((2w-1)^2, heads).
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, shift: bool = False,
                 attn_impl: str = 'auto', mask_cache: Optional[SizeCache] = None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim={dim} is not divisible by num_heads={num_heads}')
        self.init_attention_impl(attn_impl)
        self.mask_cache = SizeCache(MASK_CACHE_ENTRIES) if mask_cache is None else mask_cache
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift_size = math.ceil(window_size / 2) if shift else 0
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads))
        trunc_normal_(self.relative_position_bias_table, std=0.01)
        # (N, N): the table row of every pair of tokens in a window, N = w * w
        self.register_buffer('relative_position_index',
                             gen_relative_position_index((window_size, window_size)),
                             persistent=False)

    def attention_mask(self, height: int, width: int,
                       device: torch.device) -> Optional[torch.Tensor]:
        """(nW, N, N) additive mask for a (height, width) map, or None if nothing is masked.

        A pair is masked when the key is padding, or (S block) when query and key come
        from different regions of the rolled map. Kept in :attr:`mask_cache`.
        """
        w, s = self.window_size, self.shift_size
        return self.mask_cache.get((w, s, height, width, device),
                                   lambda: build_window_mask(height, width, w, s, device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, H, W, C) -> (B, H, W, C)."""
        B, H, W, C = x.shape
        w, s = self.window_size, self.shift_size
        if torch.compiler.is_exporting():
            return self.forward_exported(x)
        # Traced (the TorchScript ONNX exporter), H and W stand for any size: pad and mask
        # whatever they are.
        tracing = torch.jit.is_tracing()
        if tracing or H % w or W % w:
            # Up to whole windows; n * w - H is never negative, so no % of a negative size
            # (which the TorchScript exporter computes with truncation).
            x = F.pad(x, (0, 0, 0, (W + w - 1) // w * w - W, 0, (H + w - 1) // w * w - H))
        padded_h, padded_w = x.shape[1:3]
        if s:
            x = torch.roll(x, (-s, -s), dims=(1, 2))
        windows = window_partition(x, w)  # (B * nW, N, C)
        n_windows, N = windows.shape[:2]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(N, N, -1).permute(2, 0, 1)  # (heads, N, N)
        mask = build_window_mask(H, W, w, s, x.device, always=True) if tracing else \
            self.attention_mask(H, W, x.device)
        if self.kernel_for(x) == 'sdpa':
            out = window_sdpa(self.qkv(windows), B, self.num_heads, bias, mask)
        else:
            qkv = self.qkv(windows).reshape(n_windows, N, 3, self.num_heads, -1)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B * nW, heads, N, d)
            attn = (q * self.scale) @ k.transpose(-2, -1) + bias
            if mask is not None:
                attn = attn.view(B, -1, self.num_heads, N, N) + mask[None, :, None]
                attn = attn.view(n_windows, self.num_heads, N, N)
            out = attn.softmax(dim=-1) @ v
            out = out.transpose(1, 2).reshape(n_windows, N, C)
        out = self.proj(out)

        x = window_reverse(out, w, padded_h, padded_w)
        if s:
            x = torch.roll(x, (s, s), dims=(1, 2))
        return x[:, :H, :W].contiguous()

    def forward_exported(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` as ``torch.export`` traces it, for any H and W: the math of the
        reference kernel, always padded and masked, with the windows' rows and columns kept
        as axes of their own (B, nh, nw, ...). Nothing is merged with the batch or split from
        a product of counts, so the exporter needs no guard on the size (such as whether a
        map is more than one window wide)."""
        B, H, W, C = x.shape
        w, s, M = self.window_size, self.shift_size, self.num_heads
        N = w * w
        nh, nw = window_counts(H, W, w)
        x = F.pad(x, (0, 0, 0, nw * w - W, 0, nh * w - H))
        if s:
            x = torch.roll(x, (-s, -s), dims=(1, 2))
        x = x.unflatten(1, (nh, w)).unflatten(3, (nw, w)).permute(0, 1, 3, 2, 4, 5)
        qkv = self.qkv(x).reshape(B, nh, nw, N, 3, M, C // M)
        q, k, v = qkv.permute(4, 0, 1, 2, 5, 3, 6).unbind(0)  # each (B, nh, nw, M, N, d)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(N, N, -1).permute(2, 0, 1)  # (heads, N, N)
        mask = build_window_grid_mask(H, W, w, s, x.device)  # (nh, nw, N, N)
        attn = (q * self.scale) @ k.transpose(-2, -1) + bias + mask[:, :, None]
        out = (attn.softmax(dim=-1) @ v).transpose(3, 4).reshape(B, nh, nw, w, w, C)
        x = self.proj(out).permute(0, 1, 3, 2, 4, 5).reshape(B, nh * w, nw * w, C)
        if s:
            x = torch.roll(x, (s, s), dims=(1, 2))
        # A slice would need a proof that H <= nh * w; a gather of the first H rows and W
        # columns needs none.
        return x.index_select(1, torch.arange(H, device=x.device)).index_select(
            2, torch.arange(W, device=x.device))

    def adapt_state_dict(self, state_dict: Dict, prefix: str) -> None:
        """Resize a table of another window size in ``state_dict``, in place (see
        :mod:`dat.models.checkpoint`)."""
        key = prefix + 'relative_position_bias_table'
        table = state_dict.get(key)
        own = self.relative_position_bias_table
        if table is not None and table.dim() == 2 and table.shape != own.shape \
                and table.shape[1] == own.shape[1] \
                and math.isqrt(table.shape[0]) ** 2 == table.shape[0]:
            state_dict[key] = resize_relative_position_table(table, self.window_size)
            MMLogger.get_current_instance().info(
                f'resized {key} from {tuple(table.shape)} to {tuple(own.shape)}')

    def _load_from_state_dict(self, state_dict: Dict, prefix: str, *args, **kwargs):
        self.adapt_state_dict(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
