"""DAT++: Spatially Dynamic Vision Transformer with Deformable Attention (Xia et al., 2023).

image (B, 3, H, W)
  -> patch_embed: 3x3 conv s2 -> LayerNorm -> GELU -> 3x3 conv s2 -> LayerNorm
                                                               -> (B, H/4, W/4, C0)
  -> stages[0..3]: [downsample: 3x3 conv s2 (no bias), LayerNorm]  (stages 1-3)
                   blocks: x += lpu(x)                    (depthwise 3x3 conv)
                           x += drop_path(attn(norm1(x)))
                           x += drop_path(mlp(norm2(x)))  (fc1 -> +dwconv3x3 -> GELU -> fc2)
                   where attn is N (7x7 neighbourhood) or D (deformable, strided keys)
  -> norm{i} on each stage in out_indices                  -> (B, Ci, ~H/2^(i+2), ...)

The convolutions with stride 2 round up: a side of n becomes ceil(n / 2). Tensors are
channels-last inside, as in :class:`dat.models.DAT`, whose checkpoint loading, freezing and
forward this class shares. The attention layers, with their math, are
``dat/models/layers/neighborhood_attention.py`` and ``deformable_attention_plusplus.py``.
"""
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from timm.layers import DropPath

from ..layers import DeformableAttentionPlusPlus, NeighborhoodAttention
from ..layers.neighborhood_attention import TILE_PLAN_ENTRIES
from .dat import DAT, OFFSET_KERNEL_SIZES, DATBlock, StageSpec

#: Neighbourhood side of the N blocks (``nat_ksizes`` of every released model).
NEIGHBORHOOD_SIZE = 7
#: Stride of the D blocks' offset network, so of their grid of keys, by stage.
KEY_STRIDES = (8, 4, 2, 1)
#: The smallest input side: below it the last stage is 1 pixel wide, and the D blocks'
#: grids, which divide by (size - 1), are undefined (the release gives NaN there).
MIN_INPUT_SIZE = 33


def _conv_norm(x: torch.Tensor, conv: nn.Conv2d, norm: nn.LayerNorm) -> torch.Tensor:
    """(B, H, W, C) -> conv -> LayerNorm -> (B, H', W', C')."""
    return norm(conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class ConvStem(nn.Module):
    """(B, 3, H, W) -> (B, H/4, W/4, C) with two 3x3 stride-2 convs.

    Parameter names: ``proj1``, ``norm1`` (C/2 channels), ``proj2``, ``norm2``.
    """

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.proj1 = nn.Conv2d(in_channels, dim // 2, 3, 2, 1)
        self.norm1 = nn.LayerNorm(dim // 2)
        self.act = nn.GELU()
        self.proj2 = nn.Conv2d(dim // 2, dim, 3, 2, 1)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.proj1(x).permute(0, 2, 3, 1)))
        return _conv_norm(x, self.proj2, self.norm2)


class ConvDownsample(nn.Module):
    """(B, H, W, C) -> (B, H/2, W/2, C'): 3x3 stride-2 conv without bias, LayerNorm.

    Parameter names: ``proj``, ``norm``.
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_dim, out_dim, 3, 2, 1, bias=False)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _conv_norm(x, self.proj, self.norm)


def recompute_hooks(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                    y: torch.Tensor):
    """``saved_tensors_hooks`` under which a tensor saved for the backward that is ``y = fn(x)``
    or a view of it is not kept: the backward computes ``fn(x)`` again and takes the same view.
    ``fn`` must be deterministic and ``x`` kept anyway (by ``fn``'s own backward)."""
    storage, dtype = y.untyped_storage().data_ptr(), y.dtype

    def pack(tensor: torch.Tensor):
        if tensor.dtype == dtype and tensor.untyped_storage().data_ptr() == storage:
            return tensor.size(), tensor.stride(), tensor.storage_offset()
        return tensor

    def unpack(packed):
        if isinstance(packed, torch.Tensor):
            return packed
        with torch.no_grad():
            return fn(x).as_strided(*packed)
    return pack, unpack


class ConvMlp(nn.Module):
    """fc1 -> (x + depthwise 3x3 conv of x) -> GELU -> fc2, on (B, H, W, C).

    Parameter names: ``fc1``, ``dwconv``, ``fc2``. With ``recompute_act`` (the default) a
    training forward does not keep GELU's output for fc2's backward (see :func:`recompute_hooks`);
    :class:`DATPlusPlus` turns it off with ``with_cp``, whose checkpointing of the whole block
    must see every saved tensor (our hooks, innermost, would keep GELU's input alive instead).
    """

    def __init__(self, dim: int, hidden_dim: int, recompute_act: bool = True):
        super().__init__()
        self.recompute_act = recompute_act
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.dwconv = nn.Conv2d(hidden_dim, hidden_dim, 3, 1, 1, groups=hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)
        x = x + self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        hidden = self.act(x)
        if not (self.recompute_act and torch.is_grad_enabled() and hidden.requires_grad) \
                or torch.compiler.is_compiling() or torch.jit.is_tracing():
            return self.fc2(hidden)
        # GELU keeps its input for the backward; fc2 would keep GELU's output too (4 C per
        # token). It keeps where that is instead, and the backward applies GELU again to the
        # input (the same values), so a block stores one (B, H, W, 4C) tensor less.
        with torch.autograd.graph.saved_tensors_hooks(*recompute_hooks(self.act, x, hidden)):
            return self.fc2(hidden)


class DATPlusPlusBlock(nn.Module):
    """Local perception unit, then a pre-norm transformer block with a conv MLP.

    Parameter names: ``lpu`` (depthwise 3x3 conv), ``norm1``, ``attn``, ``norm2``, ``mlp``.

    Args:
        dim (int): Channels.
        attn (nn.Module): NeighborhoodAttention (N) or DeformableAttentionPlusPlus (D).
        drop_path (float): Stochastic depth rate of this block.
        mlp_ratio (float): MLP expansion. Default: 4.
        recompute_act (bool): See :class:`ConvMlp`. Default: True.
    """

    deformable = DATBlock.deformable

    def __init__(self, dim: int, attn: nn.Module, drop_path: float, mlp_ratio: float = 4.0,
                 recompute_act: bool = True):
        super().__init__()
        self.lpu = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), recompute_act)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.lpu(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class DATPlusPlus(DAT):
    """DAT++ backbone, with neighbourhood and strided deformable attention blocks.

    A re-implementation of `DAT++: Spatially Dynamic Vision Transformer with Deformable
    Attention <https://arxiv.org/abs/2309.01430>`_. Released checkpoints (ImageNet, and
    the backbones of the COCO and ADE20K models) convert to it with
    ``tools/model_converters/datpp2mmpretrain.py`` and ``datpp_det_seg_upgrade.py``. It is
    :class:`DAT` with other layers (stem, downsampling, blocks): checkpoint loading
    (``init_cfg``), ``frozen_stages``, ``with_cp``, outputs and
    :meth:`forward_with_deform_info` are DAT's.

    Args:
        arch (str | dict): ``'tiny'``, ``'small'``, ``'base'``, or a dict with the keys
            ``embed_dims``, ``depths``, ``num_heads``, ``groups`` (offset groups per
            stage) and ``block_types`` (one string per stage over ``'N'`` and ``'D'``).
            The stem has ``embed_dims[0]`` channels. Default: ``'tiny'``.
        img_size (int | tuple[int, int]): Training input size; sets the size of the D
            blocks' position tables. Other sizes run with the same tables (the released
            384 px model keeps those of 224). Default: 224.
        in_channels (int): Input channels. Default: 3.
        drop_path_rate (float): Stochastic depth rate of the last block; it rises linearly
            from 0 over the blocks. Default: 0.
        out_indices (Sequence[int]): See :class:`DAT` (each in -4..3). Default: ``(3,)``.
        frozen_stages (int): Freeze the stem and the first ``frozen_stages`` stages (and
            their output norms), in -1..4; -1 freezes nothing. Default: -1.
        with_cp (bool): Gradient checkpointing per block. Default: False.
        attn_impl (str): See :class:`DAT`; the N blocks run ``'sdpa'`` (blocked local
            attention, see :mod:`dat.models.layers.neighborhood_attention`) under ``'auto'``
            on every device. Default: ``'auto'``.
        init_cfg (dict, optional): See :class:`DAT`. Default: None.

    Parameter names: ``patch_embed.{proj1,norm1,proj2,norm2}``,
    ``stages.{i}.downsample.{proj,norm}`` (i >= 1),
    ``stages.{i}.blocks.{j}.{lpu,norm1,attn,norm2,mlp.fc1,mlp.dwconv,mlp.fc2}`` and
    ``norm{i}`` for i in ``out_indices``. The attentions' own names are documented in
    :class:`NeighborhoodAttention` and :class:`DeformableAttentionPlusPlus`.

    Examples:
        >>> import torch
        >>> from dat.models import DATPlusPlus
        >>> model = DATPlusPlus('tiny', out_indices=(0, 1, 2, 3)).eval()
        >>> for out in model(torch.rand(1, 3, 224, 224)):
        ...     print(tuple(out.shape))
        (1, 64, 56, 56)
        (1, 128, 28, 28)
        (1, 256, 14, 14)
        (1, 512, 7, 7)
    """

    arch_zoo = {
        'tiny': dict(embed_dims=[64, 128, 256, 512], depths=[2, 4, 18, 2],
                     num_heads=[2, 4, 8, 16], groups=[1, 2, 4, 8],
                     block_types=['ND', 'NDND', 'ND' * 9, 'DD']),
        'small': dict(embed_dims=[96, 192, 384, 768], depths=[2, 4, 18, 2],
                      num_heads=[3, 6, 12, 24], groups=[1, 2, 3, 6],
                      block_types=['ND', 'NDND', 'ND' * 9, 'DD']),
        'base': dict(embed_dims=[128, 256, 512, 1024], depths=[2, 4, 18, 2],
                     num_heads=[4, 8, 16, 32], groups=[2, 4, 8, 16],
                     block_types=['ND', 'NDND', 'ND' * 9, 'DD']),
    }
    block_kinds = 'ND'
    display_name = 'DAT++'
    min_input_size = MIN_INPUT_SIZE
    min_input_reason = ', so that the last stage is at least 2 x 2'

    def __init__(self,
                 arch: Union[str, Dict] = 'tiny',
                 img_size: Union[int, Tuple[int, int]] = 224,
                 in_channels: int = 3,
                 drop_path_rate: float = 0.0,
                 out_indices: Sequence[int] = (3,),
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 attn_impl: str = 'auto',
                 init_cfg: Optional[Dict] = None):
        super().__init__(arch=arch, img_size=img_size, in_channels=in_channels,
                         drop_path_rate=drop_path_rate, out_indices=out_indices,
                         frozen_stages=frozen_stages, with_cp=with_cp, attn_impl=attn_impl,
                         init_cfg=init_cfg)

    def _make_stem(self, in_channels: int, dim: int) -> nn.Module:
        return ConvStem(in_channels, dim)

    def _make_downsample(self, in_dim: int, out_dim: int) -> nn.Module:
        return ConvDownsample(in_dim, out_dim)

    def _stage_spec(self, stage: int, fmap: Tuple[int, int], window: int,
                    with_cp: bool) -> StageSpec:
        # no window_size argument: the local blocks are N blocks of the released size
        return super()._stage_spec(stage, fmap, window, with_cp)._replace(
            local_size=NEIGHBORHOOD_SIZE)

    def _make_block(self, kind: str, spec: StageSpec, drop_path: float) -> nn.Module:
        if kind == 'D':
            attn = DeformableAttentionPlusPlus(
                spec.dim, spec.num_heads, spec.groups, spec.fmap,
                OFFSET_KERNEL_SIZES[spec.index], KEY_STRIDES[spec.index],
                attn_impl=self.attn_impl)
        else:
            attn = NeighborhoodAttention(spec.dim, spec.num_heads, spec.local_size,
                                         attn_impl=self.attn_impl,
                                         tile_plans=self._shared_cache('tile_plans',
                                                                       TILE_PLAN_ENTRIES))
        return DATPlusPlusBlock(spec.dim, attn, drop_path, recompute_act=spec.recompute_act)
