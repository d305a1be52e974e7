"""Convert checkpoints of the 2022 DAT release to this package's parameter names.

A 2022 checkpoint is ``{"model": state_dict}`` with keys such as
``stages.2.attns.1.proj_q.weight``. The result is an mmpretrain ``ImageClassifier`` state
dict: ``backbone.*`` (a :class:`dat.models.DAT`) and ``head.fc.*``.

Every key goes through one table of renames, :data:`RENAMES`. The architecture is read off
the checkpoint itself (:func:`infer_arch`), a model of that architecture is built, and the
converted keys must match its keys and shapes exactly, so a missing, unknown or mis-shaped
key stops the conversion with its name.
"""
import math
from typing import Callable, Dict, List, Optional, Tuple

import torch

from .renames import (Rule, apply_rules, compile_rules, convert_state, need, read_stage,
                      squeeze_1x1, state_dict_of)

Tensor = torch.Tensor


_ATTN = r'^stages\.(?P<i>\d)\.attns\.(?P<j>\d+)\.'
_BLOCK = 'backbone.stages.{i}.blocks.{j}.'

#: (2022 key pattern, our key template or None to drop, tensor transform or None); see
#: :func:`dat.converters.renames.apply_rules` for the template fields.
RENAMES: List[Rule] = [
    (r'^patch_proj\.0\.(?P<p>weight|bias)$', 'backbone.patch_embed.proj.{p}', None),
    (r'^patch_proj\.1\.norm\.(?P<p>weight|bias)$', 'backbone.patch_embed.norm.{p}', None),
    (r'^down_projs\.(?P<i>\d)\.0\.weight$', 'backbone.stages.{i1}.downsample.proj.weight', None),
    (r'^down_projs\.(?P<i>\d)\.1\.norm\.(?P<p>weight|bias)$',
     'backbone.stages.{i1}.downsample.norm.{p}', None),
    (r'^stages\.(?P<i>\d)\.layer_norms\.(?P<j>\d+)\.norm\.(?P<p>weight|bias)$',
     'backbone.stages.{i}.blocks.{j2}.norm{n}.{p}', None),
    (r'^stages\.(?P<i>\d)\.mlps\.(?P<j>\d+)\.chunk\.linear(?P<k>[12])\.(?P<p>weight|bias)$',
     _BLOCK + 'mlp.fc{k}.{p}', None),
    # L and S blocks
    (_ATTN + r'proj_qkv\.(?P<p>weight|bias)$', _BLOCK + 'attn.qkv.{p}', None),
    (_ATTN + r'relative_position_bias_table$', _BLOCK + 'attn.relative_position_bias_table',
     None),
    (_ATTN + r'(relative_position_index|attn_mask)$', None, None),  # rebuilt at run time
    # D blocks: 1x1 convs become linear layers on channels-last tokens
    (_ATTN + r'proj_(?P<q>[qkv])\.(?P<p>weight|bias)$', _BLOCK + 'attn.{q}.{p}', squeeze_1x1),
    (_ATTN + r'conv_offset\.0\.(?P<p>weight|bias)$', _BLOCK + 'attn.offset.dwconv.{p}', None),
    (_ATTN + r'conv_offset\.1\.norm\.(?P<p>weight|bias)$', _BLOCK + 'attn.offset.norm.{p}',
     None),
    (_ATTN + r'conv_offset\.3\.weight$', _BLOCK + 'attn.offset.proj.weight', None),
    (_ATTN + r'rpe_table$', _BLOCK + 'attn.rpe_table', None),
    # proj_out is a Linear in L/S blocks and a 1x1 conv in D blocks
    (_ATTN + r'proj_out\.(?P<p>weight|bias)$', _BLOCK + 'attn.proj.{p}', squeeze_1x1),
    # classifier
    (r'^cls_norm\.norm\.(?P<p>weight|bias)$', 'backbone.norm3.{p}', None),
    (r'^cls_head\.(?P<p>weight|bias)$', 'head.fc.{p}', None),
]
_COMPILED = compile_rules(RENAMES)


def rename_key(key: str) -> Tuple[Optional[str], Optional[Callable]]:
    """Our name for a 2022 key (None for dropped buffers) and the tensor transform.

    Raises:
        ConversionError: if no rule matches the key.
    """
    return apply_rules(key, _COMPILED, '2022')


def _need(state: Dict[str, Tensor], key: str) -> Tensor:
    return need(state, key, '2022')


def infer_arch(state: Dict[str, Tensor]) -> Dict:
    """Read the architecture off a 2022 state dict.

    Returns:
        dict: ``arch`` (a zoo name or a dict for :class:`dat.models.DAT`), ``img_size``,
        ``window_size`` (list of 4) and ``num_classes``.
    """
    from dat.models import DAT

    arch = dict(embed_dims=[], depths=[], num_heads=[], groups=[], block_types=[])
    windows, img_size = [], None
    for i in range(4):
        dim, depth, d_blocks = read_stage(state, i, '2022')
        arch['embed_dims'].append(dim)
        kinds, window, heads, groups = '', None, None, -1
        for j in range(depth):
            attn = f'stages.{i}.attns.{j}.'
            if j in d_blocks:
                kinds += 'D'
                heads, groups, table_size = d_blocks[j]
                if img_size is None:
                    img_size = (table_size + 1) // 2 * 4 * 2 ** i
            else:
                kinds += 'S' if attn + 'attn_mask' in state else 'L'
                table = _need(state, attn + 'relative_position_bias_table')
                heads = table.shape[1]
                window = (math.isqrt(table.shape[0]) + 1) // 2
        arch['depths'].append(depth)
        arch['block_types'].append(kinds)
        arch['num_heads'].append(heads)
        arch['groups'].append(groups)
        windows.append(window if window is not None else 7)
    num_classes = _need(state, 'cls_head.weight').shape[0]
    name = next((n for n, s in DAT.arch_zoo.items() if s == arch), None)
    return dict(arch=name or arch, img_size=img_size or 224, window_size=windows,
                num_classes=num_classes)


def expected_shapes(arch_info: Dict) -> Dict[str, torch.Size]:
    """Keys and shapes of an ImageClassifier with a DAT backbone of this architecture."""
    from dat.models import DAT

    with torch.device('meta'):
        backbone = DAT(arch_info['arch'], img_size=arch_info['img_size'],
                       window_size=arch_info['window_size'])
    shapes = {f'backbone.{k}': v.shape for k, v in backbone.state_dict().items()}
    dim = backbone.num_features[-1]
    shapes['head.fc.weight'] = torch.Size([arch_info['num_classes'], dim])
    shapes['head.fc.bias'] = torch.Size([arch_info['num_classes']])
    return shapes


def convert_dat2022(checkpoint: Dict) -> Tuple[Dict[str, Tensor], Dict]:
    """Convert a 2022 checkpoint (``{"model": state_dict}`` or a bare state dict).

    Returns:
        tuple: ``(state_dict, arch_info)`` with our keys, and what :func:`infer_arch` found.

    Raises:
        ConversionError: naming every key that is unknown, missing or of the wrong shape.
    """
    state = state_dict_of(checkpoint, 'model', '2022 DAT')
    arch_info = infer_arch(state)
    return convert_state(state, rename_key, expected_shapes(arch_info)), arch_info
