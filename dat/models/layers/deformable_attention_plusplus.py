"""Deformable multi-head attention of DAT++ (Xia et al., arXiv 2309.01430).

The D block of DAT++ differs from the 2022 one (:mod:`.deformable_attention`, whose
notation this follows: a (B, H, W, C) map, G offset groups, M heads of d channels) in
where it samples and how it normalises coordinates. From the release's
``DAttentionBaseline`` with ``offset_range_factor=-1``:

1. Queries: ``q = x W_q``.
2. Offsets on a coarser grid: the offset network's depthwise conv (kernel 9/7/5/3) runs
   with stride ``s`` = 8/4/2/1 by stage (padding ``k // 2``), so it gives one raw offset
   ``dp`` per cell of an Hk x Wk key grid, ``Hk = (H - 1) // s + 1``. There is no tanh
   and no scaling.
3. Sampling positions: ``p = clamp(r + dp, -1, 1)`` with the reference grid
   ``r_i = (i + 0.5) / (Hk - 1) * 2 - 1`` (so it reaches past 1 at the last cell; the
   clamp brings such positions back to the border).
4. Keys and values: ``x~ = phi(x; p)`` (bilinear, ``align_corners=True``), Hk*Wk keys per
   group, ``k = x~ W_k``, ``v = x~ W_v``.
5. Relative position bias: the queries sit on the grid ``g_i = i / (H - 1) * 2 - 1`` (the
   pixel centres, corner to corner); ``bias = phi(B^; (g_q - p_k) / 2)`` from the table
   ``B^`` (M, 2H_t - 1, 2W_t - 1) made for the training size, as in 2022.
6. ``z = softmax(q k^T / sqrt(d) + bias) v``, then ``z W_o``.

Both grids divide by (size - 1), so every stage needs at least 2 x 2 positions; the
backbone refuses inputs for which a stage would be 1 pixel high or wide.

:class:`DeformableAttentionPlusPlus` is :class:`.DeformableAttention` (same parameters, same
steps 1, 4 and 6) with the grids of steps 3 and 5 and the offset transform of step 3
replaced. Its ``'sdpa'`` kernel is that of :class:`.DeformableAttention`: gathered keys and
values, the separable position bias, ``F.scaled_dot_product_attention``; the queries' grid
is separable here too.
"""
from typing import Tuple

import torch

from .deformable_attention import DeformableAttention


def key_grid(height: int, width: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Step 3's reference grid r, (Hk, Wk, 2) in (y, x): (i + 0.5) / (Hk - 1) * 2 - 1."""
    ys = (torch.arange(height, dtype=dtype, device=device) + 0.5).div(height - 1.0)
    xs = (torch.arange(width, dtype=dtype, device=device) + 0.5).div(width - 1.0)
    return torch.stack(torch.meshgrid(ys, xs, indexing='ij'), dim=-1).mul(2.0).sub(1.0)


def query_axis(size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """One axis of step 5's query grid g, (size,): i / (size - 1) * 2 - 1."""
    return torch.arange(size, dtype=dtype, device=device).div(size - 1.0).mul(2.0).sub(1.0)


class DeformableAttentionPlusPlus(DeformableAttention):
    """DAT++'s deformable multi-head attention over a (B, H, W, C) feature map.

    Args:
        dim (int): Channels C.
        num_heads (int): Heads M.
        groups (int): Offset groups G; each has its own sampling positions.
        fmap_size (tuple[int, int]): Feature-map size that the position table is made for
            (the training size of the stage). Other sizes run with the same table.
        offset_kernel_size (int): Kernel of the offset network (9/7/5/3 in stages 0-3).
        offset_stride (int): Its stride s, the stride of the key grid (8/4/2/1 in stages
            0-3).
        attn_impl (str): ``'reference'`` (``grid_sample`` and plain PyTorch) or ``'sdpa'``
            (gathers, the separable bias and ``F.scaled_dot_product_attention``); ``'auto'``
            is ``'sdpa'`` on CUDA, ``'reference'`` elsewhere. Default: ``'auto'``.

    Parameter names: those of :class:`.DeformableAttention`.
    """

    #: See :attr:`.AttentionImplMixin.export_kernel` (the reference kernel's views of the
    #: key grid would need guards here).
    export_kernel = 'sdpa'

    def key_grid(self, height: int, width: int, dtype: torch.dtype,
                 device: torch.device) -> torch.Tensor:
        return key_grid(height, width, dtype, device)

    def move(self, references: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return (references + offsets).clamp(-1.0, 1.0)

    def query_axes(self, height: int, width: int, dtype: torch.dtype,
                   device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        return query_axis(height, dtype, device), query_axis(width, dtype, device)
