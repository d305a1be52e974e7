"""Deformable multi-head attention, the D block of DAT (Xia et al., CVPR 2022).

Notation: a feature map ``x`` of shape (B, H, W, C), ``G`` offset groups of ``C/G``
channels each, ``M`` heads of ``d = C/M`` channels (``M/G`` heads per group).
Coordinates are (y, x) pairs normalised to [-1, 1].

1. Queries: ``q = x W_q``.
2. Offsets: per group, a small network (depthwise k x k conv -> LayerNorm -> GELU ->
   1x1 conv to 2 channels) maps the group's query channels to a 2-D offset per location:
   ``dp = s * tanh(theta(q_g)) * (1/H, 1/W)``, where ``s = 2`` is the offset range factor
   (:data:`OFFSET_RANGE_FACTOR`, that of every released model); k is 9/7/5/3 in stages 0-3.
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

DAT++ (:mod:`.deformable_attention_plusplus`) keeps steps 1, 4, 5 and 6 and changes how
steps 2-3 place the keys and which grid the queries sit on in step 5; its class is this one
with those methods replaced.

``attn_impl`` (see :mod:`dat.models.layers.common`): ``'reference'`` is the plain PyTorch
code below, with ``F.grid_sample`` in steps 4 and 5. ``'sdpa'`` is exact against it without
``grid_sample`` (:mod:`.bilinear`): step 4 gathers the four bilinear taps of each position as
rows of the channels-last map, step 5 is the separable form of the bilinear table lookup
(two GEMMs), and step 6 runs ``F.scaled_dot_product_attention`` with that bias as its mask
(in the attention's dtype, rows aligned for the fused kernels; made in blocks of query rows,
checkpointed in training, once it would be large). Its backward has no scatter into the
table and no op without a deterministic CUDA implementation.
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from mmengine.logging import MMLogger
from timm.layers import LayerNorm2d, trunc_normal_
from torch.utils.checkpoint import checkpoint

from . import fast_attention
from .bilinear import sample_rows, separable_position_bias
from .common import AttentionImplMixin, is_exporting

#: s in step 2: an offset moves its reference point by at most s / 2 cells of the reference
#: grid in each direction (cells of ``offset_stride`` pixels: about one cell for s = 2).
OFFSET_RANGE_FACTOR = 2.0


def reference_axis(size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The pixel centres of an axis of ``size`` pixels, (size,), normalised to [-1, 1]."""
    # arange + 0.5 equals linspace(0.5, H - 0.5, H) exactly, and exports to ONNX in
    # ``dtype`` (the TorchScript exporter turns linspace into float64).
    return (torch.arange(size, dtype=dtype, device=device) + 0.5) / size * 2 - 1


def meshgrid(ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """The (len(ys), len(xs), 2) grid of (y, x) points of two axes."""
    return torch.stack(torch.meshgrid(ys, xs, indexing='ij'), dim=-1)


def reference_points(height: int, width: int, dtype: torch.dtype,
                     device: torch.device) -> torch.Tensor:
    """The uniform grid of pixel centres, (H, W, 2) in (y, x), normalised to [-1, 1]."""
    return meshgrid(reference_axis(height, dtype, device), reference_axis(width, dtype, device))


def resize_rpe_table(table: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Resize a (heads, Th, Tw) table so that it keeps its normalised coordinates."""
    return F.interpolate(table[None].float(), size=size, mode='bilinear',
                         align_corners=True)[0].to(table.dtype)


def sample_position_bias(table: torch.Tensor, queries: torch.Tensor,
                         positions: torch.Tensor) -> torch.Tensor:
    """Step 5: the (B, M, Nq, Ns) bias sampled from the (M, Th, Tw) table at half the
    displacements between the query points ``queries`` ((H, W, 2) with Nq = H * W, or
    (Nq, 2), e.g. some rows of that grid) and the (B, G, Hk, Wk, 2) key positions
    (Ns = Hk * Wk).

    The grid stays in the positions' dtype (float32 or wider: it addresses table cells);
    the bias is in that dtype too, and a caller under autocast casts it to the attention's
    dtype."""
    displacement = (queries.reshape(1, 1, -1, 1, 2) -
                    rearrange(positions, 'b g hk wk yx -> b g 1 (hk wk) yx')) * 0.5
    # The batch is folded into the sampling grid, so the table is never copied per image.
    grid = rearrange(displacement.flip(-1), 'b g q k xy -> g (b q) k xy')
    table = rearrange(table, '(g m) th tw -> g m th tw', g=positions.shape[1])
    bias = F.grid_sample(table.to(grid.dtype), grid, mode='bilinear', align_corners=True)
    return rearrange(bias, 'g m (b q) k -> b (g m) q k', b=positions.shape[0])


def fit_rpe_table(state_dict: Dict, key: str, own: torch.Tensor) -> None:
    """On load: resize the checkpoint's table under ``key`` to ``own``'s size (and log it)
    when only its spatial size differs."""
    table = state_dict.get(key)
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
        self.norm = LayerNorm2d(channels, eps=1e-5)  # nn.LayerNorm's eps, as in the release
        self.act = nn.GELU()
        self.proj = nn.Conv2d(channels, 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm(self.dwconv(x)))
        # LayerNorm2d leaves a channels-last layout; the 1x1 conv's weight gradient would
        # follow it (strides (C, 1, C, C) for a (2, C, 1, 1) weight) and DDP would copy it
        # into its bucket at every step ("grad strides do not match bucket view strides").
        return self.proj(x.contiguous())


class DeformableAttention(AttentionImplMixin, nn.Module):
    """Deformable multi-head attention over a (B, H, W, C) feature map.

    Args:
        dim (int): Channels C.
        num_heads (int): Heads M.
        groups (int): Offset groups G; each has its own sampling positions.
        fmap_size (tuple[int, int]): Feature-map size that the position table is made for
            (the training size of the stage).
        offset_kernel_size (int): Kernel k of the offset network's depthwise conv (9/7/5/3
            in stages 0-3 of the released models).
        offset_stride (int): Stride of that conv, so of the grid of keys: 1 in DAT (one key
            per query); DAT++ samples fewer keys (see
            :class:`~.deformable_attention_plusplus.DeformableAttentionPlusPlus`).
            Default: 1.
        attn_impl (str): Kernel, one of :data:`dat.models.layers.ATTENTION_IMPLS`.
            Default: ``'auto'``.

    Parameter names: ``q``, ``k``, ``v``, ``proj`` (linear layers), ``offset`` (the
    offset network: ``dwconv``, ``norm``, ``proj``) and ``rpe_table``
    (M, 2H_t - 1, 2W_t - 1).
    """

    #: The SDPA kernel makes its position bias in blocks of query rows once the whole bias
    #: would have more than this many elements (B * heads * queries * keys; 2**26 is
    #: 256 MiB in fp32), and with gradients runs each block under
    #: ``torch.utils.checkpoint``. Attributes of the layer: set them on one layer to change
    #: its blocks.
    bias_block_threshold = 2 ** 26
    #: Where gradients are needed, the bias goes into checkpointed blocks from this many
    #: elements on (or from :attr:`bias_block_threshold`, if lower): in one piece the bias,
    #: its two GEMMs' float32 intermediate (about twice its size) and their weights would be
    #: kept for the backward; checkpointed, none is (they are made again there). At 896 px,
    #: batch 1, this keeps 2.2 GiB of DAT-T++'s D blocks (stages 1-3) out of its step.
    training_bias_block_threshold = 2 ** 22
    #: About this many bias elements per block (64 MiB in fp32).
    bias_block_elements = 2 ** 24

    def __init__(self, dim: int, num_heads: int, groups: int, fmap_size: Tuple[int, int],
                 offset_kernel_size: int, offset_stride: int = 1, attn_impl: str = 'auto'):
        super().__init__()
        if dim % num_heads or num_heads % groups:
            raise ValueError(f'dim={dim}, num_heads={num_heads} and groups={groups} must '
                             'divide: dim by heads, heads by groups')
        self.init_attention_impl(attn_impl)
        self.num_heads = num_heads
        self.groups = groups
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.offset = OffsetNetwork(dim // groups, offset_kernel_size, offset_stride)
        height, width = fmap_size
        self.rpe_table = nn.Parameter(torch.zeros(num_heads, 2 * height - 1, 2 * width - 1))
        trunc_normal_(self.rpe_table, std=0.01)

    # Steps 2-3 and the query grid of step 5: what DAT++ changes.
    def key_grid(self, height: int, width: int, dtype: torch.dtype,
                 device: torch.device) -> torch.Tensor:
        """The reference points r of the (Hk, Wk) key grid, (Hk, Wk, 2)."""
        return reference_points(height, width, dtype, device)

    def move(self, references: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Step 3: the sampling positions p from r and the raw offsets, (B, G, Hk, Wk, 2)."""
        height, width = offsets.shape[2:4]
        # Per axis, not through a tensor made of the sizes: traced (ONNX export), the sizes
        # stay those of the input (a tensor made of them would be a constant of the graph).
        dy, dx = offsets.tanh().unbind(-1)
        return references + torch.stack([dy * (1.0 / height * OFFSET_RANGE_FACTOR),
                                         dx * (1.0 / width * OFFSET_RANGE_FACTOR)], dim=-1)

    def query_axes(self, height: int, width: int, dtype: torch.dtype,
                   device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        """Where the rows and the columns of the (H, W) queries sit in step 5: (H,), (W,)."""
        return reference_axis(height, dtype, device), reference_axis(width, dtype, device)

    def query_grid(self, height: int, width: int, dtype: torch.dtype,
                   device: torch.device) -> torch.Tensor:
        """Where the (H, W) queries sit in step 5, (H, W, 2)."""
        return meshgrid(*self.query_axes(height, width, dtype, device))

    def sampling_positions(self, q: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Steps 2-3: (positions, references), each (B, G, Hk, Wk, 2) in (y, x)."""
        G = self.groups
        # Positions are at least float32 (also under autocast): they address pixels.
        offsets = self.offset(rearrange(q, 'b h w (g c) -> (b g) c h w', g=G))
        offsets = offsets.to(torch.promote_types(offsets.dtype, torch.float32))
        offsets = rearrange(offsets, '(b g) yx hk wk -> b g hk wk yx', g=G)
        references = self.key_grid(*offsets.shape[2:4], offsets.dtype,
                                   q.device).expand_as(offsets)
        return self.move(references, offsets), references

    def position_bias(self, positions: torch.Tensor, height: int,
                      width: int) -> torch.Tensor:
        """Step 5: the sampled bias, (B, M, H*W, Hk*Wk)."""
        queries = self.query_grid(height, width, positions.dtype, positions.device)
        return sample_position_bias(self.rpe_table, queries, positions)

    def attend_inputs(self, x: torch.Tensor, kernel: str = 'reference'):
        """Steps 1-4: ``q`` (B, M, H*W, d), ``k`` and ``v`` (B, M, Hk*Wk, d), and the
        sampling positions and references. ``kernel='reference'`` samples with
        ``F.grid_sample``, the others with gathered rows (the same numbers)."""
        M = self.num_heads
        q = self.q(x)
        positions, references = self.sampling_positions(q)
        # Step 4: sample each group's channels at its positions.
        if kernel == 'reference':
            grid = rearrange(positions, 'b g hk wk yx -> (b g) hk wk yx').flip(-1).to(x.dtype)
            sampled = F.grid_sample(rearrange(x, 'b h w (g c) -> (b g) c h w', g=self.groups),
                                    grid, mode='bilinear', align_corners=True)
            sampled = rearrange(sampled, '(b g) c hk wk -> b (hk wk) (g c)', g=self.groups)
        else:
            sampled = sample_rows(x, positions)
        k = rearrange(self.k(sampled), 'b n (m d) -> b m n d', m=M)
        v = rearrange(self.v(sampled), 'b n (m d) -> b m n d', m=M)
        q = rearrange(q, 'b h w (m d) -> b m (h w) d', m=M)
        return q, k, v, positions, references

    def attention_weights(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor,
                          height: int, width: int) -> torch.Tensor:
        """Step 6's softmax weights, (B, M, H*W, Hk*Wk), with the bias of step 5."""
        logits = (q * self.scale) @ k.transpose(-2, -1)
        return (logits + self.position_bias(positions, height, width)).softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, H, W, C) -> (B, H, W, C)."""
        H, W = x.shape[1:3]
        kernel = self.kernel_for(x)
        q, k, v, positions, _ = self.attend_inputs(x, kernel)
        if kernel == 'reference':
            out = self.attention_weights(q, k, positions, H, W) @ v
        else:
            out = self._sdpa(q, k, v, positions, H, W)
        return self.proj(rearrange(out, 'b m (h w) d -> b h w (m d)', h=H))

    @torch.no_grad()
    def deform_info(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """What this layer looks at for the input ``x`` (B, H, W, C), computed again with
        the reference kernel and without gradients: ``positions`` and ``references``
        (B, G, Hk, Wk, 2; (y, x) in ``grid_sample``'s [-1, 1] over the H x W map,
        ``align_corners=True``), ``attn_weights`` (B, M, H*W, Hk*Wk), the softmax weights of
        each query over the sampled keys, and ``feature_size`` (H, W), the map of the
        queries."""
        H, W = x.shape[1:3]
        q, k, _, positions, references = self.attend_inputs(x)
        return dict(positions=positions, references=references, feature_size=(H, W),
                    attn_weights=self.attention_weights(q, k, positions, H, W))

    def bias_rows(self, batch: int, height: int, width: int, keys: int,
                  training: bool = False) -> Optional[int]:
        """Rows of the (height, width) query grid per block of the SDPA kernel's bias, or None
        for one piece (at most :attr:`bias_block_threshold` elements; with ``training``,
        where the blocks are checkpointed, at most :attr:`training_bias_block_threshold`)."""
        threshold = min(self.bias_block_threshold, self.training_bias_block_threshold) \
            if training else self.bias_block_threshold
        row = batch * self.num_heads * width * keys
        if row * height <= threshold:
            return None
        return max(1, min(height, self.bias_block_elements // row))

    def _sdpa(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              positions: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Steps 5-6 with SDPA, the bias of step 5 as its mask: in one piece, or in blocks of
        query rows (:meth:`bias_rows`), each checkpointed when gradients are needed, so that
        no (B, M, HW, Ns) bias is materialised at detection sizes, and none (nor what makes
        it) is kept for the backward past :attr:`training_bias_block_threshold` elements."""
        keys = positions.flatten(2, 3)  # (B, G, Nk, 2)
        # Query points in the positions' dtype: with them they address table cells.
        ys, xs = self.query_axes(height, width, positions.dtype, q.device)
        # Traced or exported (ONNX, torch.export: any size), the blocks' layout would be that
        # of the traced size: one piece.
        if is_exporting():
            return self._sdpa_rows(q, k, v, keys, ys, xs)
        checkpointed = fast_attention.needs_grad(q, k, v, self.rpe_table, positions)
        rows = self.bias_rows(q.shape[0], height, width, k.shape[2], training=checkpointed)
        if rows is None:
            return self._sdpa_rows(q, k, v, keys, ys, xs)
        blocks = []
        for start in range(0, height, rows):
            args = (q[:, :, start * width:(start + rows) * width], k, v, keys,
                    ys[start:start + rows], xs)
            blocks.append(checkpoint(self._sdpa_rows, *args, use_reentrant=False)
                          if checkpointed else self._sdpa_rows(*args))
        return torch.cat(blocks, dim=2)

    def _sdpa_rows(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keys: torch.Tensor,
                   ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        """SDPA for the queries ``q`` (B, M, n, d) of the grid rows at ``ys`` and the columns
        at ``xs`` (n = len(ys) * len(xs)), with the keys at ``keys`` (B, G, Nk, 2)."""
        bias = separable_position_bias(self.rpe_table, (ys, xs), keys)  # (B, G, M/G, h, W, Nk)
        mask = fast_attention.into_mask(bias, q.shape[:3] + keys.shape[2:3], q.dtype)
        return fast_attention.attention(q, k, v, mask, self.scale)

    def adapt_state_dict(self, state_dict: Dict, prefix: str) -> None:
        """Resize a table of another feature-map size in ``state_dict``, in place (see
        :mod:`dat.models.checkpoint`)."""
        fit_rpe_table(state_dict, prefix + 'rpe_table', self.rpe_table)

    def _load_from_state_dict(self, state_dict: Dict, prefix: str, *args, **kwargs):
        self.adapt_state_dict(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
