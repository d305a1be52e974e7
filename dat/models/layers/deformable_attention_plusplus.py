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

Fast path (``attn_impl``, see :mod:`dat.models.layers.common`): step 6 with
``F.scaled_dot_product_attention`` and the bias of step 5 as its mask.
"""
from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_

from .common import check_attention_impl, resolve_attention_impl
from .deformable_attention import (OFFSET_KERNEL_SIZES, OffsetNetwork, fit_rpe_table,
                                   sample_position_bias)

#: Stride of the offset network (the key grid's stride), by stage.
KEY_STRIDES = (8, 4, 2, 1)


def key_grid(height: int, width: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Step 3's reference grid r, (Hk, Wk, 2) in (y, x): (i + 0.5) / (Hk - 1) * 2 - 1."""
    ys = (torch.arange(height, dtype=dtype, device=device) + 0.5).div(height - 1.0)
    xs = (torch.arange(width, dtype=dtype, device=device) + 0.5).div(width - 1.0)
    return torch.stack(torch.meshgrid(ys, xs, indexing='ij'), dim=-1).mul(2.0).sub(1.0)


def query_grid(height: int, width: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Step 5's query grid g, (H, W, 2) in (y, x): i / (H - 1) * 2 - 1."""
    ys = torch.arange(height, dtype=dtype, device=device).div(height - 1.0)
    xs = torch.arange(width, dtype=dtype, device=device).div(width - 1.0)
    return torch.stack(torch.meshgrid(ys, xs, indexing='ij'), dim=-1).mul(2.0).sub(1.0)


class DeformableAttentionPlusPlus(nn.Module):
    """DAT++'s deformable multi-head attention over a (B, H, W, C) feature map.

    Args:
        dim (int): Channels C.
        num_heads (int): Heads M.
        groups (int): Offset groups G; each has its own sampling positions.
        fmap_size (tuple[int, int]): Feature-map size that the position table is made for
            (the training size of the stage). Other sizes run with the same table.
        stage_index (int): Stage 0-3; picks the offset kernel (9/7/5/3) and the key
            stride (8/4/2/1).
        attn_impl (str): ``'reference'`` computes step 6 in plain PyTorch; ``'sdpa'`` and
            ``'flex'`` with ``F.scaled_dot_product_attention`` (no FlexAttention kernel for
            DAT++ yet); ``'auto'`` follows :func:`dat.models.layers.resolve_attention_impl`.
            Default: ``'auto'``.

    Parameter names: ``q``, ``k``, ``v``, ``proj`` (linear layers), ``offset`` (the
    offset network: ``dwconv``, ``norm``, ``proj``) and ``rpe_table`` (M, 2H_t - 1, 2W_t - 1).
    """

    def __init__(self, dim: int, num_heads: int, groups: int, fmap_size: Tuple[int, int],
                 stage_index: int, attn_impl: str = 'auto'):
        super().__init__()
        self.attn_impl = check_attention_impl(attn_impl)
        if dim % num_heads or num_heads % groups:
            raise ValueError(f'dim={dim}, num_heads={num_heads} and groups={groups} must '
                             'divide: dim by heads, heads by groups')
        self.num_heads = num_heads
        self.groups = groups
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.offset = OffsetNetwork(dim // groups, OFFSET_KERNEL_SIZES[stage_index],
                                    KEY_STRIDES[stage_index])
        height, width = fmap_size
        self.rpe_table = nn.Parameter(torch.zeros(num_heads, 2 * height - 1, 2 * width - 1))
        trunc_normal_(self.rpe_table, std=0.01)

    def sampling_positions(self, q: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Steps 2-3: (positions, references), each (B, G, Hk, Wk, 2) in (y, x)."""
        B, H, W, C = q.shape
        G = self.groups
        q_groups = q.reshape(B, H, W, G, C // G).permute(0, 3, 4, 1, 2)
        # Positions stay in float32 under autocast: they address pixels.
        offset = self.offset(q_groups.reshape(B * G, C // G, H, W)).float()
        Hk, Wk = offset.shape[-2:]
        offset = offset.permute(0, 2, 3, 1).reshape(B, G, Hk, Wk, 2)
        reference = key_grid(Hk, Wk, torch.float32, q.device).expand(B, G, Hk, Wk, 2)
        return (reference + offset).clamp(-1.0, 1.0), reference

    def position_bias(self, positions: torch.Tensor, height: int,
                      width: int) -> torch.Tensor:
        """Step 5: the sampled bias, (B, M, H*W, Hk*Wk)."""
        queries = query_grid(height, width, positions.dtype, positions.device)
        return sample_position_bias(self.rpe_table, queries, positions)

    def forward(self, x: torch.Tensor, return_info: bool = False):
        """x: (B, H, W, C) -> (B, H, W, C).

        With ``return_info=True`` it also returns a dict with ``positions`` and
        ``references`` (B, G, Hk, Wk, 2; (y, x) in grid_sample's [-1, 1]) and
        ``attn_weights`` (B, M, H*W, Hk*Wk).
        """
        B, H, W, C = x.shape
        G, M = self.groups, self.num_heads
        q = self.q(x)
        positions, references = self.sampling_positions(q)

        # Step 4: sample each group's channels at its positions.
        x_groups = x.permute(0, 3, 1, 2).reshape(B * G, C // G, H, W)
        grid = positions.reshape(B * G, *positions.shape[2:]).flip(-1).to(x.dtype)
        sampled = F.grid_sample(x_groups, grid, mode='bilinear', align_corners=True)
        sampled = sampled.reshape(B, C, -1).transpose(1, 2)  # (B, Ns, C)
        k = self.k(sampled).reshape(B, -1, M, C // M).transpose(1, 2)
        v = self.v(sampled).reshape(B, -1, M, C // M).transpose(1, 2)
        q = q.reshape(B, H * W, M, C // M).transpose(1, 2)

        # Step 6, with the bias of step 5.
        bias = self.position_bias(positions, H, W)
        kernel = resolve_attention_impl(self.attn_impl, x.device)
        if kernel != 'reference' and not return_info:  # 'flex' runs SDPA here too
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype),
                                                 scale=self.scale)
        else:
            attn = ((q * self.scale) @ k.transpose(-2, -1) + bias).softmax(dim=-1)
            out = attn @ v
        out = self.proj(out.transpose(1, 2).reshape(B, H, W, C))
        if return_info:
            return out, dict(positions=positions, references=references, attn_weights=attn)
        return out

    def adapt_state_dict(self, state_dict: Dict, prefix: str) -> None:
        """Resize a table of another feature-map size in ``state_dict``, in place (see
        :mod:`dat.models.checkpoint`)."""
        fit_rpe_table(state_dict, prefix + 'rpe_table', self.rpe_table)

    def _load_from_state_dict(self, state_dict: Dict, prefix: str, *args, **kwargs):
        self.adapt_state_dict(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
