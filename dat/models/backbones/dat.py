"""DAT: Vision Transformer with Deformable Attention (Xia et al., CVPR 2022).

image (B, 3, H, W)
  -> patch_embed: 4x4 conv, stride 4, LayerNorm                 -> (B, H/4, W/4, C0)
  -> stages[0..3]: [downsample: 2x2 conv, stride 2, LayerNorm]  (stages 1-3)
                   blocks: x += drop_path(attn(norm1(x)))
                           x += drop_path(mlp(norm2(x)))
                   where attn is L (local window), S (shifted window) or D (deformable)
  -> norm{i} on each stage in out_indices                        -> (B, Ci, H/2^(i+2), ...)

Inside the backbone tensors are channels-last (B, H, W, C); the outputs are (B, C, H, W).
The attention layers live in ``dat/models/layers``; the deformable one, with its math, is
``deformable_attention.py``.
"""
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from timm.layers import DropPath, Mlp

from ..checkpoint import load_weights
from ..layers import (DeformableAttention, SizeCache, WindowAttention, attention_kernels,
                      attention_layers, check_attention_impl)
from ..layers.common import summarize_kernels
from ..layers.window_attention import MASK_CACHE_ENTRIES

PATCH_SIZE = 4
#: The smallest input side: the stem divides by 4, then three stages by 2.
MIN_INPUT_SIZE = PATCH_SIZE * 2 ** 3
#: Kernel size of the D blocks' offset network, by stage (DAT and DAT++).
OFFSET_KERNEL_SIZES = (9, 7, 5, 3)
#: Stages of every DAT and DAT++ model.
NUM_STAGES = 4


class StageSpec(NamedTuple):
    """How the blocks of one stage are built: what :meth:`DAT._make_block` reads."""
    index: int  #: the stage, 0..3
    dim: int  #: channels
    num_heads: int
    groups: int  #: offset groups of the D blocks
    fmap: Tuple[int, int]  #: the training feature map (sets the D blocks' position tables)
    local_size: int  #: the window side of L / S blocks (DAT), the neighbourhood of N (DAT++)
    with_cp: bool  #: gradient checkpointing of each block
    #: Recompute cheap activations in the backward instead of keeping them (DAT++'s conv
    #: MLP); off under ``with_cp``, whose checkpoint must see every saved tensor.
    recompute_act: bool


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_number(name: str, value, allowed: str, low=None, high=None, integer: bool = False,
                 upper_open: bool = False):
    """``value`` if it is a number (an int if ``integer``) in [low, high] (or [low, high)),
    else a ValueError that names ``name``, the value and ``allowed``."""
    ok = _is_int(value) if integer else (
        isinstance(value, (int, float)) and not isinstance(value, bool))
    if ok and low is not None:
        ok = value >= low
    if ok and high is not None:
        ok = value < high if upper_open else value <= high
    if not ok:
        raise ValueError(f'{name}={value!r} is not allowed: it must be {allowed}')
    return value


def check_out_indices(out_indices) -> Tuple[int, ...]:
    """Stage indices, each in -4..3 (negative: counted from the end, as mmpretrain's Swin
    does), without duplicates; returned non-negative and in stage order."""
    allowed = (f'a non-empty sequence of distinct stage indices in -{NUM_STAGES}..'
               f'{NUM_STAGES - 1} (negative ones count from the last stage)')
    if isinstance(out_indices, (str, bytes)) or not isinstance(out_indices, Sequence) \
            or not out_indices:
        raise ValueError(f'out_indices={out_indices!r} is not allowed: it must be {allowed}')
    bad = [i for i in out_indices if not _is_int(i) or not -NUM_STAGES <= i < NUM_STAGES]
    if bad:
        raise ValueError(f'out_indices={tuple(out_indices)!r} is not allowed: {bad[0]!r} is '
                         f'out of range; it must be {allowed}')
    stages = [i % NUM_STAGES for i in out_indices]
    if len(set(stages)) != len(stages):
        raise ValueError(f'out_indices={tuple(out_indices)!r} is not allowed: it names a '
                         f'stage twice; it must be {allowed}')
    return tuple(sorted(stages))


def check_frozen_stages(frozen_stages) -> int:
    return check_number('frozen_stages', frozen_stages,
                        f'an int in -1..{NUM_STAGES} (-1 freezes nothing, 0 the stem, k the '
                        f'stem and the first k stages)', -1, NUM_STAGES, integer=True)


def check_window_size(window_size) -> List[int]:
    """One window side for every stage, or one per stage (4); each a positive int."""
    sides = [window_size] * NUM_STAGES if _is_int(window_size) else window_size
    if not isinstance(sides, Sequence) or isinstance(sides, str) or len(sides) != NUM_STAGES:
        raise ValueError(f'window_size={window_size!r} is not allowed: window_size needs one '
                         f'value or {NUM_STAGES} (one per stage), each a positive int')
    if not all(_is_int(w) and w >= 1 for w in sides):
        raise ValueError(f'window_size={window_size!r} is not allowed: each window side must '
                         'be a positive int')
    return list(sides)


def check_img_size(img_size, min_size: int) -> Tuple[int, int]:
    """``(H, W)`` from an int or a pair of ints, each at least ``min_size``."""
    allowed = f'an int or an (H, W) pair of ints, each at least {min_size}'
    pair = (img_size, img_size) if _is_int(img_size) else img_size
    if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2 \
            or not all(_is_int(v) and v >= min_size for v in pair):
        raise ValueError(f'img_size={img_size!r} is not allowed: it must be {allowed}')
    return tuple(pair)


class PatchEmbed(nn.Module):
    """(B, 3, H, W) -> (B, H/4, W/4, C). Parameter names: ``proj``, ``norm``."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, PATCH_SIZE, PATCH_SIZE)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class Downsample(nn.Module):
    """(B, H, W, C) -> (B, H/2, W/2, C'). Parameter names: ``proj`` (no bias), ``norm``."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_dim, out_dim, 2, 2, bias=False)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class DATBlock(nn.Module):
    """Pre-norm transformer block. Parameter names: ``norm1``, ``attn``, ``norm2``, ``mlp``.

    Args:
        dim (int): Channels.
        attn (nn.Module): WindowAttention (L, S) or DeformableAttention (D).
        drop_path (float): Stochastic depth rate of this block.
        mlp_ratio (float): MLP expansion. Default: 4.
    """

    def __init__(self, dim: int, attn: nn.Module, drop_path: float, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    @property
    def deformable(self) -> bool:
        """Whether the block's attention is deformable (a D block, in DAT and DAT++)."""
        return isinstance(self.attn, DeformableAttention)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class DATStage(nn.Module):
    """An optional downsample followed by blocks. Parameter names: ``downsample``, ``blocks``."""

    def __init__(self, downsample: Optional[nn.Module], blocks: List[DATBlock],
                 with_cp: bool = False):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.ModuleList(blocks)
        self.with_cp = with_cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        for block in self.blocks:
            if self.with_cp and x.requires_grad:
                x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x


class DAT(BaseModule):
    """DAT backbone, with local, shifted-window and deformable attention blocks.

    A re-implementation of `Vision Transformer with Deformable Attention
    <https://arxiv.org/abs/2201.00520>`_. Released 2022 checkpoints convert to it with
    ``tools/model_converters/dat2mmpretrain.py``.

    Args:
        arch (str | dict): ``'tiny'``, ``'small'``, ``'base'``, or a dict with the keys
            ``embed_dims``, ``depths``, ``num_heads`` (one entry per stage), ``groups``
            (offset groups per stage; ignored where a stage has no D block) and
            ``block_types`` (one string per stage over ``'L'``, ``'S'``, ``'D'``, as long
            as its depth). Default: ``'tiny'``.
        img_size (int | tuple[int, int]): Training input size. It sets the size of the
            D blocks' position tables (the stage's feature map); other sizes run too, see
            :mod:`dat.models.layers.deformable_attention`. Default: 224.
        window_size (int | Sequence[int]): Window side of the L and S blocks, one value or
            one per stage. Default: 7.
        in_channels (int): Input channels. Default: 3.
        drop_path_rate (float): Stochastic depth rate of the last block; it rises linearly
            from 0 over the blocks. Default: 0.
        out_indices (Sequence[int]): Stages whose (normalised) outputs are returned, in
            stage order; each in -4..3 (negative ones count from the last stage, as in
            mmpretrain's Swin), no stage twice. Default: ``(3,)``.
        frozen_stages (int): Freeze the stem and the first ``frozen_stages`` stages (and
            their output norms), in -1..4; -1 freezes nothing. Default: -1.
        with_cp (bool): Gradient checkpointing per block. Default: False.
        attn_impl (str): How every attention layer computes: ``'reference'`` (plain
            PyTorch and ``grid_sample``, the numbers of the 2022 code), ``'sdpa'`` (fused
            SDPA kernels; in D blocks, gathers and a separable position bias instead of
            ``grid_sample``, so training can be deterministic on CUDA) or ``'auto'`` (each
            layer's best for the device: ``'sdpa'`` on CUDA, ``'reference'`` elsewhere
            except DAT++'s neighbourhood blocks, ``'sdpa'`` everywhere). All give the same
            numbers up to rounding. :func:`dat.models.layers.attention_kernels` says which
            kernel each layer runs, the first forward logs it, and
            :func:`dat.models.layers.set_attention_impl` changes it on a built model.
            Default: ``'auto'``.
        init_cfg (dict, optional): mmengine init config, e.g. ``dict(type='Pretrained',
            checkpoint=..., prefix='backbone.')``, loaded strictly (see :meth:`init_weights`).
            Position tables of another size are resized on load and the resize is logged.
            Default: None.

    Parameter names: ``patch_embed.{proj,norm}``, ``stages.{i}.downsample.{proj,norm}``
    (i >= 1), ``stages.{i}.blocks.{j}.{norm1,attn,norm2,mlp.fc1,mlp.fc2}`` and
    ``norm{i}`` for i in ``out_indices``. The attentions' own names are documented in
    :class:`WindowAttention` and :class:`DeformableAttention`.

    Examples:
        >>> import torch
        >>> from dat.models import DAT
        >>> model = DAT('tiny', out_indices=(0, 1, 2, 3)).eval()
        >>> for out in model(torch.rand(1, 3, 224, 224)):
        ...     print(tuple(out.shape))
        (1, 96, 56, 56)
        (1, 192, 28, 28)
        (1, 384, 14, 14)
        (1, 768, 7, 7)
    """

    arch_zoo = {
        'tiny': dict(embed_dims=[96, 192, 384, 768], depths=[2, 2, 6, 2],
                     num_heads=[3, 6, 12, 24], groups=[-1, -1, 3, 6],
                     block_types=['LS', 'LS', 'LDLDLD', 'LD']),
        'small': dict(embed_dims=[96, 192, 384, 768], depths=[2, 2, 18, 2],
                      num_heads=[3, 6, 12, 24], groups=[-1, -1, 3, 6],
                      block_types=['LS', 'LS', 'LD' * 9, 'LD']),
        'base': dict(embed_dims=[128, 256, 512, 1024], depths=[2, 2, 18, 2],
                     num_heads=[4, 8, 16, 32], groups=[-1, -1, 4, 8],
                     block_types=['LS', 'LS', 'LD' * 9, 'LD']),
    }
    arch_keys = ('embed_dims', 'depths', 'num_heads', 'groups', 'block_types')
    #: The letters of ``block_types``.
    block_kinds = 'LSD'
    #: The architecture's name in messages.
    display_name = 'DAT'

    def __init__(self,
                 arch: Union[str, Dict] = 'tiny',
                 img_size: Union[int, Tuple[int, int]] = 224,
                 window_size: Union[int, Sequence[int]] = 7,
                 in_channels: int = 3,
                 drop_path_rate: float = 0.0,
                 out_indices: Sequence[int] = (3,),
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 attn_impl: str = 'auto',
                 init_cfg: Optional[Dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.attn_impl = check_attention_impl(attn_impl)
        self._logged_impl = False
        #: The per-size tensors (window masks, ...) that layers of one kind share, by kind.
        self.size_caches: Dict[str, SizeCache] = {}
        self.arch_settings = self.parse_arch(arch)
        dims = self.arch_settings['embed_dims']
        depths = self.arch_settings['depths']
        windows = check_window_size(window_size)
        img_h, img_w = check_img_size(img_size, self.min_input_size)
        self.out_indices = check_out_indices(out_indices)
        self.frozen_stages = check_frozen_stages(frozen_stages)
        check_number('drop_path_rate', drop_path_rate, 'a float in [0, 1)', 0, 1,
                     upper_open=True)
        check_number('in_channels', in_channels, 'a positive int', 1, integer=True)
        if not isinstance(with_cp, bool):
            raise ValueError(f'with_cp must be True or False, got {with_cp!r}')

        n_blocks = sum(depths)
        drop_path = [drop_path_rate * k / max(n_blocks - 1, 1) for k in range(n_blocks)]
        self.patch_embed = self._make_stem(in_channels, dims[0])
        self.stages = nn.ModuleList()
        for i in range(NUM_STAGES):
            fmap = (img_h // PATCH_SIZE // 2 ** i, img_w // PATCH_SIZE // 2 ** i)
            spec = self._stage_spec(i, fmap, windows[i], with_cp)
            blocks = [self._make_block(kind, spec, drop_path[sum(depths[:i]) + j])
                      for j, kind in enumerate(self.arch_settings['block_types'][i])]
            downsample = self._make_downsample(dims[i - 1], dims[i]) if i > 0 else None
            self.stages.append(DATStage(downsample, blocks, with_cp))
        for i in self.out_indices:
            self.add_module(f'norm{i}', nn.LayerNorm(dims[i]))
        self.num_features = [dims[i] for i in self.out_indices]
        self._freeze_stages()

    # The layers, one method each, so that a sibling architecture (DAT++) can swap them.
    def _make_stem(self, in_channels: int, dim: int) -> nn.Module:
        """(B, in_channels, H, W) -> (B, H/4, W/4, dim)."""
        return PatchEmbed(in_channels, dim)

    def _make_downsample(self, in_dim: int, out_dim: int) -> nn.Module:
        """(B, H, W, in_dim) -> (B, H/2, W/2, out_dim), at the start of stages 1-3."""
        return Downsample(in_dim, out_dim)

    def _stage_spec(self, stage: int, fmap: Tuple[int, int], window: int,
                    with_cp: bool) -> StageSpec:
        """How the blocks of ``stage`` are built, whose training feature map is ``fmap``."""
        settings = self.arch_settings
        return StageSpec(index=stage, dim=settings['embed_dims'][stage],
                         num_heads=settings['num_heads'][stage],
                         groups=settings['groups'][stage], fmap=fmap, local_size=window,
                         with_cp=with_cp, recompute_act=not with_cp)

    def _shared_cache(self, kind: str, entries: int) -> SizeCache:
        """The backbone's bounded cache of per-size tensors of ``kind``, for its layers."""
        if kind not in self.size_caches:
            self.size_caches[kind] = SizeCache(entries)
        return self.size_caches[kind]

    def _make_block(self, kind: str, spec: StageSpec, drop_path: float) -> nn.Module:
        """A block of ``kind`` (a letter of ``block_types``) in the stage of ``spec``."""
        if kind == 'D':
            attn = DeformableAttention(spec.dim, spec.num_heads, spec.groups, spec.fmap,
                                       OFFSET_KERNEL_SIZES[spec.index], attn_impl=self.attn_impl)
        else:
            attn = WindowAttention(spec.dim, spec.num_heads, spec.local_size, shift=kind == 'S',
                                   attn_impl=self.attn_impl,
                                   mask_cache=self._shared_cache('window_masks',
                                                                 MASK_CACHE_ENTRIES))
        return DATBlock(spec.dim, attn, drop_path)

    @classmethod
    def parse_arch(cls, arch: Union[str, Dict]) -> Dict:
        """Check ``arch`` and return its settings as a dict."""
        if isinstance(arch, str):
            if arch not in cls.arch_zoo:
                raise ValueError(f'Unknown arch {arch!r} for {cls.__name__}; choose one of '
                                 f'{sorted(cls.arch_zoo)} or pass a dict with the keys '
                                 f'{list(cls.arch_keys)}')
            return dict(cls.arch_zoo[arch])
        if not isinstance(arch, Mapping):
            raise ValueError(f'arch={arch!r} is not allowed: it must be one of '
                             f'{sorted(cls.arch_zoo)} or a dict with the keys '
                             f'{list(cls.arch_keys)}')
        missing = set(cls.arch_keys) - set(arch)
        if missing:
            raise ValueError(f'A custom {cls.__name__} arch needs the keys {list(cls.arch_keys)}; '
                             f'missing {sorted(missing)}')
        settings = {key: list(arch[key]) for key in cls.arch_keys}
        for key in cls.arch_keys:
            if len(settings[key]) != NUM_STAGES:
                raise ValueError(f'arch[{key!r}] needs one entry per stage ({NUM_STAGES}), '
                                 f'got {settings[key]}')
        for key in ('embed_dims', 'depths', 'num_heads'):
            if not all(_is_int(v) and v >= 1 for v in settings[key]):
                raise ValueError(f'arch[{key!r}]={settings[key]} is not allowed: each entry '
                                 'must be a positive int')
        for i, (dim, heads) in enumerate(zip(settings['embed_dims'], settings['num_heads'])):
            if dim % heads:
                raise ValueError(f'stage {i}: embed_dims={dim} is not divisible by '
                                 f'num_heads={heads}')
        for i, (kinds, depth) in enumerate(zip(settings['block_types'], settings['depths'])):
            if len(kinds) != depth or set(kinds) - set(cls.block_kinds):
                raise ValueError(f'arch block_types[{i}]={kinds!r} must have {depth} letters '
                                 f'from {", ".join(map(repr, cls.block_kinds))}')
            if 'D' in kinds and settings['groups'][i] <= 0:
                raise ValueError(f'stage {i} has D blocks but groups={settings["groups"][i]}')
            if 'D' in kinds and settings['num_heads'][i] % settings['groups'][i]:
                raise ValueError(f'stage {i}: num_heads={settings["num_heads"][i]} is not '
                                 f'divisible by groups={settings["groups"][i]} (offset groups '
                                 'share the heads)')
        return settings

    def _freeze_stages(self):
        if self.frozen_stages < 0:
            return
        modules = [self.patch_embed]
        for i in range(min(self.frozen_stages, NUM_STAGES)):
            modules.append(self.stages[i])
            if i in self.out_indices:
                modules.append(getattr(self, f'norm{i}'))
        for module in modules:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def init_weights(self):
        """Load ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)`` strictly.

        Every stem and stage tensor must be in the checkpoint with the model's shape, except
        position tables of another size, which the attention layers resize (and log).
        Otherwise a :class:`~dat.models.checkpoint.CheckpointError` (a ``ValueError``) names
        the first offending keys; ``strict=False`` in the init_cfg loads what fits instead.
        Output norms (``norm{i}``) may be missing (a classification checkpoint has ``norm3``
        only) or extra; they are logged as skipped. ``load_state_dict`` itself keeps
        PyTorch's contract. See :mod:`dat.models.checkpoint`. Other init_cfg types go to
        mmengine.
        """
        cfg = self.init_cfg
        if not (isinstance(cfg, dict) and cfg.get('type') == 'Pretrained'):
            return super().init_weights()
        load_weights(self, cfg['checkpoint'], prefix=cfg.get('prefix'),
                     strict=cfg.get('strict', True), pretrained=True, what=self.weights_name())
        self._is_init = True

    #: Keys (relative to the backbone) that a pretrained checkpoint may lack or carry in
    #: excess: the output norms, which depend on ``out_indices`` (see
    #: :mod:`dat.models.checkpoint`).
    optional_state_keys = r'norm\d+\.'

    def weights_name(self) -> str:
        """The backbone in the errors of :func:`~dat.models.checkpoint.check_fit`, which
        checks a module that has this method as a whole (``backbones_only``)."""
        return (f'{self.display_name} backbone (embed_dims={self.arch_settings["embed_dims"]}, '
                f'depths={self.arch_settings["depths"]})')

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        return self

    #: The smallest input side, and why (in the error for smaller inputs).
    min_input_size = MIN_INPUT_SIZE
    min_input_reason = ' (patch stem 4, then three 2x downsamplings)'

    def _check_input(self, x: torch.Tensor):
        if x.dim() != 4:
            raise ValueError(f'{self.display_name} expects a (B, C, H, W) batch, got shape '
                             f'{tuple(x.shape)}')
        if min(x.shape[-2:]) < self.min_input_size:
            raise ValueError(f'input of size {tuple(x.shape[-2:])} is too small for '
                             f'{self.display_name}: both sides must be at least '
                             f'{self.min_input_size} pixels{self.min_input_reason}')

    def _log_attention_impl(self, device: torch.device):
        """Record the kernel in use in the log file of a run (scripts stay quiet)."""
        import logging

        from mmengine.logging import MMLogger
        self._logged_impl = True
        logger = MMLogger.get_current_instance()
        if any(isinstance(h, logging.FileHandler) for h in logger.handlers):
            kernels = summarize_kernels(attention_kernels(self, device),
                                        attention_layers(self))
            logger.info(f'DAT attention: attn_impl={self.attn_impl!r} runs {kernels} on '
                        f'{device.type}')

    def forward_stages(self, x: torch.Tensor, keep: Sequence[int],
                       stop_early: bool = False) -> List[torch.Tensor]:
        """The stem and the stages: (B, C, H, W) -> the channels-last outputs (B, H_i, W_i,
        C_i) of the stages in ``keep`` (ascending), before any output norm. With
        ``stop_early`` the stages after the last of ``keep`` do not run. :meth:`forward` and
        the timm model (:mod:`dat.timm_models`) both run the network through this method."""
        self._check_input(x)
        if not self._logged_impl and not torch.compiler.is_compiling():
            self._log_attention_impl(x.device)
        x = self.patch_embed(x)
        stages = self.stages[:max(keep) + 1] if stop_early else self.stages
        outs = []
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in keep:
                outs.append(x)
        return outs

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, C, H, W) -> one (B, C_i, H_i, W_i) map per stage in ``out_indices``."""
        maps = self.forward_stages(x, self.out_indices)
        return tuple(getattr(self, f'norm{i}')(out).permute(0, 3, 1, 2).contiguous()
                     for i, out in zip(self.out_indices, maps))

    def forward_with_deform_info(self, x: torch.Tensor):
        """:meth:`forward`, and what each D block looked at (for visualisation).

        A forward hook on each deformable attention layer records
        :meth:`DeformableAttention.deform_info` of its input (without gradients); the
        forward itself is the plain one (gradient checkpointing included), so the outputs
        are those of :meth:`forward`.

        Returns:
            tuple: ``(outs, info)``. ``info`` maps ``'stage{i}.block{j}'`` of every D block to
            a dict with ``positions`` and ``references`` (B, G, Hk, Wk, 2), as (y, x) in
            [-1, 1] (``grid_sample`` coordinates with ``align_corners=True`` over the
            block's H x W map), ``attn_weights`` (B, heads, H*W, Hk*Wk) and
            ``feature_size`` (H, W).
        """
        info = {}

        def record(key: str):
            return lambda attn, args, output: info.__setitem__(key, attn.deform_info(args[0]))

        handles = [block.attn.register_forward_hook(record(f'stage{i}.block{j}'))
                   for i, stage in enumerate(self.stages)
                   for j, block in enumerate(stage.blocks) if block.deformable]
        try:
            outs = self(x)
        finally:
            for handle in handles:
                handle.remove()
        return outs, info

    def no_weight_decay_keywords(self) -> Tuple[str, ...]:
        """Name fragments of the parameters that take no weight decay: the position tables of
        the window (L, S) and deformable (D) blocks, as in both releases (DAT++'s N blocks'
        ``rpb`` is decayed there too). The configs' optimizer wrapper constructor,
        :class:`dat.engine.NoDecayKeywordsConstructor`, reads them."""
        return ('relative_position_bias_table', 'rpe_table')
