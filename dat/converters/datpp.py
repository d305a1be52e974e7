"""Convert checkpoints of the DAT++ release to this package's parameter names.

An ImageNet checkpoint of LeapLabTHU/DAT (DAT++) is ``{"model": state_dict}`` with keys
such as ``stages.2.attns.1.proj_q.weight``; the result is an mmpretrain
``ImageClassifier`` state dict, ``backbone.*`` (a :class:`dat.models.DATPlusPlus`) and
``head.fc.*``. The backbones of the COCO and ADE20K checkpoints (``backbone.*`` of
DAT-Detection / DAT-Segmentation) have the same keys, with per-stage output norms
``norms.{i}`` instead of the classifier (see :func:`convert_datpp_backbone`).

Every key goes through one table of renames, :data:`RENAMES`. The architecture is read off
the checkpoint (:func:`infer_arch`), a model of it is built on the meta device, and the
converted keys must match its keys and shapes exactly, so a missing, unknown or
mis-shaped key stops the conversion with its name.

Detection and segmentation checkpoints (mmdet 2.26 / mmseg 0.29, ``{"state_dict": ...,
"meta": ...}``) convert with :func:`convert_datpp_downstream`: the backbone keys go through
the same table, the neck and head keys are kept, because mmdet 3 and mmseg 1 kept the names
of these modules (FPN, RPN, RoI and RetinaNet heads, UPerHead, FPNHead, FCNHead: their
model zoos load the 2.x / 0.x checkpoints of these detectors unchanged).
"""
from typing import Dict, List, Tuple

import torch

from .renames import (ConversionError, Rule, apply_rules, compile_rules, convert_state, need,
                      read_stage, squeeze_1x1, state_dict_of)

Tensor = torch.Tensor
LAYOUT = 'DAT++'

_STAGE = r'^stages\.(?P<i>\d)\.'
_ATTN = _STAGE + r'attns\.(?P<j>\d+)\.'
_BLOCK = 'backbone.stages.{i}.blocks.{j}.'
_PARAM = r'(?P<p>weight|bias)$'

#: (DAT++ key pattern, our key template, tensor transform or None); see
#: :func:`dat.converters.renames.apply_rules` for the template fields. 1x1 convs on
#: channels-first maps become linear layers on channels-last tokens.
RENAMES: List[Rule] = [
    # stem: conv, LayerNorm, GELU, conv, LayerNorm
    (r'^patch_proj\.0\.' + _PARAM, 'backbone.patch_embed.proj1.{p}', None),
    (r'^patch_proj\.1\.norm\.' + _PARAM, 'backbone.patch_embed.norm1.{p}', None),
    (r'^patch_proj\.3\.' + _PARAM, 'backbone.patch_embed.proj2.{p}', None),
    (r'^patch_proj\.4\.norm\.' + _PARAM, 'backbone.patch_embed.norm2.{p}', None),
    (r'^down_projs\.(?P<i>\d)\.0\.weight$', 'backbone.stages.{i1}.downsample.proj.weight', None),
    (r'^down_projs\.(?P<i>\d)\.1\.norm\.' + _PARAM, 'backbone.stages.{i1}.downsample.norm.{p}',
     None),
    # every block: LPU, two norms, conv MLP
    (_STAGE + r'local_perception_units\.(?P<j>\d+)\.' + _PARAM, _BLOCK + 'lpu.{p}', None),
    (_STAGE + r'layer_norms\.(?P<j>\d+)\.norm\.' + _PARAM,
     'backbone.stages.{i}.blocks.{j2}.norm{n}.{p}', None),
    (_STAGE + r'mlps\.(?P<j>\d+)\.linear(?P<k>[12])\.0\.' + _PARAM, _BLOCK + 'mlp.fc{k}.{p}',
     squeeze_1x1),
    (_STAGE + r'mlps\.(?P<j>\d+)\.dwc\.' + _PARAM, _BLOCK + 'mlp.dwconv.{p}', None),
    # N blocks (natten's NeighborhoodAttention2D)
    (_ATTN + r'(?P<m>qkv|proj)\.' + _PARAM, _BLOCK + 'attn.{m}.{p}', None),
    (_ATTN + r'rpb$', _BLOCK + 'attn.rpb', None),
    # D blocks
    (_ATTN + r'proj_(?P<q>[qkv])\.' + _PARAM, _BLOCK + 'attn.{q}.{p}', squeeze_1x1),
    (_ATTN + r'proj_out\.' + _PARAM, _BLOCK + 'attn.proj.{p}', squeeze_1x1),
    (_ATTN + r'conv_offset\.0\.' + _PARAM, _BLOCK + 'attn.offset.dwconv.{p}', None),
    (_ATTN + r'conv_offset\.1\.norm\.' + _PARAM, _BLOCK + 'attn.offset.norm.{p}', None),
    (_ATTN + r'conv_offset\.3\.weight$', _BLOCK + 'attn.offset.proj.weight', None),
    (_ATTN + r'rpe_table$', _BLOCK + 'attn.rpe_table', None),
    # outputs: per-stage norms (detection / segmentation), or the classifier
    (r'^norms\.(?P<i>\d)\.norm\.' + _PARAM, 'backbone.norm{i}.{p}', None),
    (r'^cls_norm\.norm\.' + _PARAM, 'backbone.norm3.{p}', None),
    (r'^cls_head\.' + _PARAM, 'head.fc.{p}', None),
]
_COMPILED = compile_rules(RENAMES)


def rename_key(key: str):
    """Our name for a DAT++ key and the tensor transform.

    Raises:
        ConversionError: if no rule matches the key.
    """
    return apply_rules(key, _COMPILED, LAYOUT)


def is_datpp(state: Dict[str, Tensor]) -> bool:
    """Whether a state dict (keys without ``backbone.``) has the DAT++ layout."""
    return 'patch_proj.3.weight' in state or any('local_perception_units' in k for k in state)


def infer_arch(state: Dict[str, Tensor]) -> Dict:
    """Read the architecture off a DAT++ state dict (keys without ``backbone.``).

    Returns:
        dict: ``arch`` (a zoo name or a dict for :class:`dat.models.DATPlusPlus`),
        ``img_size``, ``out_indices`` (the stages with an output norm) and
        ``num_classes`` (None without a classifier).
    """
    from dat.models import DATPlusPlus
    from dat.models.backbones.datpp import NEIGHBORHOOD_SIZE

    arch = dict(embed_dims=[], depths=[], num_heads=[], groups=[], block_types=[])
    img_size = None
    for i in range(4):
        dim, depth, d_blocks = read_stage(state, i, LAYOUT)
        arch['embed_dims'].append(dim)
        kinds, heads, groups = '', None, -1
        for j in range(depth):
            if j in d_blocks:
                kinds += 'D'
                heads, groups, table_size = d_blocks[j]
                if img_size is None:
                    img_size = (table_size + 1) // 2 * 4 * 2 ** i
            else:
                kinds += 'N'
                key = f'stages.{i}.attns.{j}.rpb'
                rpb = need(state, key, LAYOUT)
                heads = rpb.shape[0]
                if rpb.shape[-1] != 2 * NEIGHBORHOOD_SIZE - 1:
                    raise ConversionError(
                        f'{key} {tuple(rpb.shape)}: only {NEIGHBORHOOD_SIZE}x'
                        f'{NEIGHBORHOOD_SIZE} neighbourhoods (tables of '
                        f'{2 * NEIGHBORHOOD_SIZE - 1}) are supported')
        arch['depths'].append(depth)
        arch['block_types'].append(kinds)
        arch['num_heads'].append(heads)
        arch['groups'].append(groups)
    out_indices = tuple(i for i in range(4) if f'norms.{i}.norm.weight' in state)
    if 'cls_norm.norm.weight' in state:
        out_indices = (3, )
    num_classes = state['cls_head.weight'].shape[0] if 'cls_head.weight' in state else None
    name = next((n for n, s in DATPlusPlus.arch_zoo.items() if s == arch), None)
    return dict(arch=name or arch, img_size=img_size or 224, out_indices=out_indices,
                num_classes=num_classes)


def expected_shapes(arch_info: Dict) -> Dict[str, torch.Size]:
    """Keys and shapes of a DATPlusPlus backbone (``backbone.*``) of this architecture, and
    of the linear head (``head.fc.*``) if ``num_classes`` is set."""
    from dat.models import DATPlusPlus

    with torch.device('meta'):
        backbone = DATPlusPlus(arch_info['arch'], img_size=arch_info['img_size'],
                               out_indices=arch_info['out_indices'])
    shapes = {f'backbone.{k}': v.shape for k, v in backbone.state_dict().items()}
    if arch_info['num_classes'] is not None:
        dim = backbone.arch_settings['embed_dims'][-1]
        shapes['head.fc.weight'] = torch.Size([arch_info['num_classes'], dim])
        shapes['head.fc.bias'] = torch.Size([arch_info['num_classes']])
    return shapes


def convert_datpp(checkpoint: Dict) -> Tuple[Dict[str, Tensor], Dict]:
    """Convert a DAT++ checkpoint (``{"model": state_dict}`` or a bare state dict).

    Returns:
        tuple: ``(state_dict, arch_info)``, with our keys (``backbone.*``, and ``head.fc.*``
        for a classifier), and what :func:`infer_arch` found.

    Raises:
        ConversionError: naming every key that is unknown, missing or of the wrong shape.
    """
    state = state_dict_of(checkpoint, 'model', LAYOUT)
    arch_info = infer_arch(state)
    return convert_state(state, rename_key, expected_shapes(arch_info)), arch_info


def convert_datpp_downstream(checkpoint: Dict) -> Tuple[Dict[str, Tensor], Dict]:
    """Convert a DAT-Detection (mmdet 2.26) or DAT-Segmentation (mmseg 0.29) checkpoint.

    Returns:
        tuple: ``(state_dict, info)``: the mmdet 3 / mmseg 1 state dict (``backbone.*`` in
        our names, neck and head keys unchanged) and what :func:`infer_arch` found, plus
        ``dataset_meta`` (``classes``, and ``palette`` if the checkpoint has one).

    Raises:
        ConversionError: naming every backbone key that is unknown, missing or of the
            wrong shape.
    """
    state = state_dict_of(checkpoint, 'state_dict', 'detection or segmentation')
    backbone = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    if not backbone or not is_datpp(backbone):
        raise ConversionError('the checkpoint has no DAT++ backbone (backbone.patch_proj.*, '
                              'backbone.stages.*.local_perception_units.*)')
    info = infer_arch(backbone)
    if info['num_classes'] is not None:
        raise ConversionError("the backbone has a classifier (backbone.cls_head.*); convert "
                              'an ImageNet checkpoint with convert_datpp')
    converted = convert_state(backbone, rename_key, expected_shapes(info))
    converted.update((k, v) for k, v in state.items() if not k.startswith('backbone.'))
    meta = checkpoint.get('meta') or {}
    info['dataset_meta'] = {new: list(meta[old]) for old, new in
                            (('CLASSES', 'classes'), ('PALETTE', 'palette')) if old in meta}
    return converted, info
