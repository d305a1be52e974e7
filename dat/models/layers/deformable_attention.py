"""Deformable multi-head attention, the D block of DAT (Xia et al., CVPR 2022).

Notation: a feature map ``x`` of shape (B, H, W, C), ``G`` offset groups of ``C/G``
channels each, ``M`` heads of ``d = C/M`` channels (``M/G`` heads per group).
Coordinates are (y, x) pairs normalised to [-1, 1].

1. Queries: ``q = x W_q``.
2. Offsets: per group, a small network (depthwise k x k conv -> LayerNorm -> GELU ->
   1x1 conv to 2 channels) maps the group's query channels to a 2-D offset per location:
   ``dp = s * tanh(theta(q_g)) * (1/H, 1/W)``, where ``s`` is the offset range factor.
3. Sampling positions: ``p = r + dp``, where ``r`` is the uniform reference grid
   ``r_i = (i + 0.5) / H * 2 - 1`` (and likewise for x).
4. Keys and values: ``x~ = phi(x; p)`` bilinear sampling of each group's channels at its
   positions (``grid_sample``, ``align_corners=True``), then ``k = x~ W_k``, ``v = x~ W_v``.
5. Relative position bias: for query location ``r_q`` and key position ``p_k`` the
   displacement ``(r_q - p_k) / 2`` lies in [-1, 1]; the learnt table ``B^`` of shape
   (M, 2H_t - 1, 2W_t - 1) is sampled there bilinearly: ``bias = phi(B^; (r_q - p_k)/2)``.
6. ``z = softmax(q k^T / sqrt(d) + bias) v``, then ``z W_o``.

Any feature-map size: the table is indexed in normalised coordinates, so it defines a bias
for every displacement, whatever H and W are at run time. This is how the 2022 code
samples it; at the size the table was made for (H_t = H) the numbers are the 2022 ones.
When a checkpoint made for another size is loaded, the table is resized by bilinear
interpolation with aligned corners (see :meth:`DeformableAttention._load_from_state_dict`),
which keeps its values at the same normalised displacements.

``attn_impl`` (see :mod:`dat.models.layers.common`): ``'reference'`` is the plain PyTorch
code below. ``'sdpa'`` runs step 6 with ``F.scaled_dot_product_attention``, the sampled bias
of step 5 as its mask. ``'flex'`` (opt-in, not yet verified on a GPU) samples the table
inside a FlexAttention kernel when there are many keys, so the (B, M, HW, Ns) bias is never
stored; where FlexAttention cannot run, the layer switches to SDPA with a warning. See
:mod:`dat.models.layers.fast_attention`.
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import MMLogger
from timm.layers import trunc_normal_

from . import fast_attention
from .common import LayerNorm2d, check_attention_impl, resolve_attention_impl

#: Kernel size of the depthwise conv in the offset network, by stage.
OFFSET_KERNEL_SIZES = (9, 7, 5, 3)


def reference_points(height: int, width: int, dtype: torch.dtype,
                     device: torch.device) -> torch.Tensor:
    """The uniform grid of pixel centres, (H, W, 2) in (y, x), normalised to [-1, 1]."""
    # arange + 0.5 equals linspace(0.5, H - 0.5, H) exactly, and exports to ONNX in
    # ``dtype`` (the TorchScript exporter turns linspace into float64).
    ys = (torch.arange(height, dtype=dtype, device=device) + 0.5) / height
    xs = (torch.arange(width, dtype=dtype, device=device) + 0.5) / width
    grid = torch.stack(torch.meshgrid(ys, xs, indexing='ij'), dim=-1)
    return grid * 2 - 1


def resize_rpe_table(table: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Resize a (heads, Th, Tw) table so that it keeps its normalised coordinates."""
    return F.interpolate(table[None].float(), size=size, mode='bilinear',
                         align_corners=True)[0].to(table.dtype)


def sample_position_bias(table: torch.Tensor, queries: torch.Tensor,
                         positions: torch.Tensor) -> torch.Tensor:
    """Step 5: the (B, M, H*W, Ns) bias sampled from the (M, Th, Tw) table at half the
    displacements between the (H, W, 2) query grid and the (B, G, ..., 2) key positions."""
    B, G = positions.shape[:2]
    num_heads, n_queries = table.shape[0], queries.shape[0] * queries.shape[1]
    n_samples = positions.shape[2:-1].numel()
    # (B, G, HW, 1, 2) - (B, G, 1, Ns, 2) -> (B, G, HW, Ns, 2)
    displacement = (queries.reshape(1, 1, -1, 1, 2) -
                    positions.reshape(B, G, 1, n_samples, 2)) * 0.5
    # The batch is folded into the sampling grid, so the table is never copied per image.
    grid = displacement.flip(-1).transpose(0, 1).reshape(G, B * n_queries, n_samples, 2)
    table = table.reshape(G, num_heads // G, *table.shape[1:])
    bias = F.grid_sample(table.to(grid.dtype), grid, mode='bilinear', align_corners=True)
    bias = bias.reshape(G, num_heads // G, B, n_queries, n_samples)
    return bias.permute(2, 0, 1, 3, 4).reshape(B, num_heads, n_queries, n_samples)


def fit_rpe_table(state_dict: Dict, key: str, own: torch.Tensor) -> None:
    """On load: resize the checkpoint's table under ``key`` to ``own``'s size (and log it)
    when only its spatial size differs."""
    table: Optional[torch.Tensor] = state_dict.get(key)
    if table is not None and table.dim() == 3 and table.shape != own.shape \
            and table.shape[0] == own.shape[0]:
        state_dict[key] = resize_rpe_table(table, tuple(own.shape[1:]))
        MMLogger.get_current_instance().info(
            f'resized {key} from {tuple(table.shape)} to {tuple(own.shape)}')


class OffsetNetwork(nn.Sequential):
    """theta: depthwise conv -> LayerNorm -> GELU -> 1x1 conv to (dy, dx).

    The depthwise conv has stride ``stride`` (1 in DAT; the key stride in DAT++), with
    padding ``kernel_size // 2`` unless kernel and stride are equal.

    Parameter names: ``dwconv``, ``norm``, ``proj`` (no bias).
    """

    def __init__(self, channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        padding = kernel_size // 2 if kernel_size != stride else 0
        self.dwconv = nn.Conv2d(channels, channels, kernel_size, stride, padding,
                                groups=channels)
        self.norm = LayerNorm2d(channels)
        self.act = nn.GELU()
        self.proj = nn.Conv2d(channels, 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm(self.dwconv(x)))
        # LayerNorm2d leaves a channels-last layout; the 1x1 conv's weight gradient would
        # follow it (strides (C, 1, C, C) for a (2, C, 1, 1) weight) and DDP would copy it
        # into its bucket at every step ("grad strides do not match bucket view strides").
        return self.proj(x.contiguous())


class DeformableAttention(nn.Module):
    """Deformable multi-head attention over a (B, H, W, C) feature map.

    Args:
        dim (int): Channels C.
        num_heads (int): Heads M.
        groups (int): Offset groups G; each has its own sampling positions.
        fmap_size (tuple[int, int]): Feature-map size that the position table is made for
            (the training size of the stage).
        stage_index (int): Stage 0-3; picks the offset kernel size (9/7/5/3).
        offset_range_factor (float): s in step 2 of the module docstring. Default: 2.
        attn_drop (float): Dropout on attention weights. Default: 0.
        proj_drop (float): Dropout after the output projection. Default: 0.
        attn_impl (str): Kernel, one of :data:`dat.models.layers.ATTENTION_IMPLS`.
            Default: ``'auto'``.

    Parameter names: ``q``, ``k``, ``v``, ``proj`` (linear layers), ``offset`` (the
    offset network) and ``rpe_table`` (M, 2H_t - 1, 2W_t - 1).
    """

    def __init__(self, dim: int, num_heads: int, groups: int, fmap_size: Tuple[int, int],
                 stage_index: int, offset_range_factor: float = 2.0,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, attn_impl: str = 'auto'):
        super().__init__()
        if dim % num_heads or num_heads % groups:
            raise ValueError(f'dim={dim}, num_heads={num_heads} and groups={groups} must '
                             'divide: dim by heads, heads by groups')
        self.attn_impl = check_attention_impl(attn_impl)
        self.flex_guard = fast_attention.FlexGuard()
        self.num_heads = num_heads
        self.groups = groups
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.offset_range_factor = offset_range_factor
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.offset = OffsetNetwork(dim // groups, OFFSET_KERNEL_SIZES[stage_index])
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj_drop = nn.Dropout(proj_drop)
        height, width = fmap_size
        self.rpe_table = nn.Parameter(torch.zeros(num_heads, 2 * height - 1, 2 * width - 1))
        trunc_normal_(self.rpe_table, std=0.01)

    def sampling_positions(self, q: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Steps 2-3: (positions, references), each (B, G, H, W, 2) in (y, x)."""
        B, H, W, C = q.shape
        G = self.groups
        q_groups = q.reshape(B, H, W, G, C // G).permute(0, 3, 4, 1, 2)
        # Positions stay in float32 under autocast: they address pixels.
        offset = self.offset(q_groups.reshape(B * G, C // G, H, W)).float().tanh()
        scale = offset.new_tensor([1.0 / H, 1.0 / W]).mul(self.offset_range_factor)
        offset = offset.permute(0, 2, 3, 1).reshape(B, G, H, W, 2) * scale
        reference = reference_points(H, W, torch.float32, q.device).expand(B, G, H, W, 2)
        return reference + offset, reference

    def position_bias(self, positions: torch.Tensor, height: int,
                      width: int) -> torch.Tensor:
        """Step 5: the sampled bias, (B, M, H*W, Ns)."""
        queries = reference_points(height, width, positions.dtype, positions.device)
        return sample_position_bias(self.rpe_table, queries, positions)

    def forward(self, x: torch.Tensor, return_info: bool = False):
        """x: (B, H, W, C) -> (B, H, W, C).

        With ``return_info=True`` it also returns a dict with ``positions`` and
        ``references`` (B, G, H, W, 2; (y, x) in [-1, 1]) and ``attn_weights``
        (B, M, H*W, Ns), the softmax weights of each query over the sampled keys.
        """
        B, H, W, C = x.shape
        G, M, d = self.groups, self.num_heads, self.head_dim
        q = self.q(x)
        positions, references = self.sampling_positions(q)

        # Step 4: sample each group's channels at its positions.
        x_groups = x.permute(0, 3, 1, 2).reshape(B * G, C // G, H, W)
        grid = positions.reshape(B * G, H, W, 2).flip(-1).to(x.dtype)
        sampled = F.grid_sample(x_groups, grid,
                                mode='bilinear', align_corners=True)
        sampled = sampled.reshape(B, C, H * W).transpose(1, 2)  # (B, Ns, C)
        k = self.k(sampled).reshape(B, -1, M, d).transpose(1, 2)
        v = self.v(sampled).reshape(B, -1, M, d).transpose(1, 2)
        q = q.reshape(B, H * W, M, d).transpose(1, 2)

        # Step 6, with the bias of step 5.
        impl = resolve_attention_impl(self.attn_impl, x.device)
        if impl != 'reference' and not return_info:
            out = self._fast_attention(q, k, v, positions, references, flex=impl == 'flex')
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1) + self.position_bias(positions, H, W)
            attn = attn.softmax(dim=-1)
            out = self.attn_drop(attn) @ v
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, H, W, C)))
        if return_info:
            return out, dict(positions=positions, references=references, attn_weights=attn)
        return out

    def _fast_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        positions: torch.Tensor, references: torch.Tensor,
                        flex: bool) -> torch.Tensor:
        """Step 6 with fused kernels: (B, M, HW, d) -> (B, M, HW, d)."""
        B, G, H, W, _ = positions.shape
        dropout_p = self.attn_drop.p if self.training else 0.0
        # FlexAttention has no dropout; with attention dropout in training SDPA runs.
        if flex and H * W >= fast_attention.FLEX_MIN_KEYS and dropout_p == 0:
            keys = positions.reshape(B, G, H * W, 2)
            queries = references[0, 0].reshape(H * W, 2)
            out = self.flex_guard(lambda: fast_attention.deformable_flex_attention(
                q, k, v, self.rpe_table, keys, queries, self.scale),
                q, k, v, self.rpe_table, keys)
            if out is not None:
                return out
        bias = self.position_bias(positions, H, W)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype),
                                              dropout_p=dropout_p, scale=self.scale)

    def adapt_state_dict(self, state_dict: Dict, prefix: str) -> None:
        """Resize a table of another feature-map size in ``state_dict``, in place (see
        :mod:`dat.models.checkpoint`)."""
        fit_rpe_table(state_dict, prefix + 'rpe_table', self.rpe_table)

    def _load_from_state_dict(self, state_dict: Dict, prefix: str, *args, **kwargs):
        self.adapt_state_dict(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
