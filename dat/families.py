"""The backbone families (DAT, DAT++): one entry each, that everything else loops over.

An entry (:class:`Family`) says what the registries, the converters, the release scheme,
timm and the tools need to know: the backbone class, the paper, the converter of the
authors' checkpoints, their release files and the timm model names. The adapters of
mmpretrain, mmdet and mmseg, :mod:`dat.converters.releases`, :mod:`dat.timm_models` and the
tools read :data:`FAMILIES`; none of them names a family.

A new family is one backbone class (``dat/models/backbones/``), one converter
(``dat/converters/``) and one :func:`register_family` call at the end of this file. Code
that serves every family calls :func:`for_each_family`, which runs its function on each
family already declared and on those declared later::

    >>> from dat.families import FAMILIES
    >>> [(f.name, f.backbone.__name__, f.paper) for f in FAMILIES.values()]
    [('DAT', 'DAT', 'arXiv:2201.00520'), ('DAT++', 'DATPlusPlus', 'arXiv:2309.01430')]
"""
from typing import Callable, Dict, List, Mapping, NamedTuple, Tuple

import torch.nn as nn

from dat.converters import convert_dat2022
from dat.converters.datpp import convert_datpp
from dat.models import DAT, DATPlusPlus


class TimmModel(NamedTuple):
    """A timm model name of a family: one classifier of the authors' release."""
    name: str  #: e.g. ``'dat_tiny'``
    arch: str  #: the backbone's ``arch``
    release: str  #: the release file that holds its weights
    doc: str  #: one line for ``timm.list_models`` users
    input_size: int = 224  #: the release's eval size
    crop_pct: float = 224 / 256  #: the release's eval crop
    kwargs: Mapping = {}  #: other backbone arguments (e.g. ``img_size``, ``window_size``)


class Family(NamedTuple):
    """One backbone family."""
    name: str  #: in messages and the release table, e.g. ``'DAT++'``
    key: str  #: in tool arguments, e.g. ``'datpp'`` (``datpp-tiny``)
    backbone: type  #: the backbone class; its ``__name__`` is its registry name
    paper: str  #: e.g. ``'arXiv:2309.01430'``
    convert: Callable  #: release checkpoint -> (our state dict, what it read off the file)
    converter_script: str  #: the command-line converter of release files
    readme: str  #: the authors' README that lists the release files
    releases: Mapping[str, str]  #: release file -> where the authors publish it
    timm_models: Tuple[TimmModel, ...] = ()
    #: c in ``input pixel = (f + c) * stride - c`` for cell f of a feature map: the centre
    #: of what a cell sees (0.5: non-overlapping patches; 0: padded 3x3 stride-2 convs).
    cell_centre: float = 0.5
    #: Stochastic depth by arch in the release's ImageNet recipe (benchmarks use it).
    drop_path: Mapping[str, float] = {}


#: The families by name, in the order they were declared.
FAMILIES: Dict[str, Family] = {}
_consumers: List[Callable[[Family], None]] = []


def register_family(family: Family) -> Family:
    """Declare ``family``; everything that called :func:`for_each_family` gets it."""
    if family.name in FAMILIES:
        raise ValueError(f'a family named {family.name!r} is already declared')
    FAMILIES[family.name] = family
    for consumer in list(_consumers):
        consumer(family)
    return family


def for_each_family(consumer: Callable[[Family], None]) -> None:
    """Call ``consumer(family)`` for every family, now and for those declared later."""
    _consumers.append(consumer)
    for family in list(FAMILIES.values()):
        consumer(family)


def register_backbones(registry) -> None:
    """Register every family's backbone class in an OpenMMLab ``MODELS`` registry."""
    for_each_family(lambda family: registry.register_module(
        name=family.backbone.__name__, module=family.backbone, force=True))


def family_of(backbone: type) -> Family:
    """The family whose backbone is ``backbone`` (a class)."""
    for family in FAMILIES.values():
        if family.backbone is backbone:
            return family
    raise ValueError(f'{backbone.__name__} is not the backbone of a family; known: '
                     f'{[f.backbone.__name__ for f in FAMILIES.values()]}')


def family_by_key(key: str) -> Family:
    """The family whose :attr:`Family.key` is ``key`` (``'dat'``, ``'datpp'``)."""
    for family in FAMILIES.values():
        if family.key == key:
            return family
    raise ValueError(f'unknown family {key!r}; choose one of '
                     f'{[f.key for f in FAMILIES.values()]}')


def build_backbone(backbone_cfg: Mapping) -> nn.Module:
    """A family's backbone from a config's ``model.backbone`` (its ``type`` may carry a
    registry scope, e.g. ``'mmdet.DAT'``), without its ``init_cfg`` (so that nothing is
    loaded from the config's pretrained path)."""
    kwargs = dict(backbone_cfg)
    kind = str(kwargs.pop('type', '')).split('.')[-1]
    classes = {f.backbone.__name__: f.backbone for f in FAMILIES.values()}
    if kind not in classes:
        raise ValueError(f'the backbone type is {kind!r}, not one of {sorted(classes)}')
    kwargs.pop('init_cfg', None)
    return classes[kind](**kwargs)


_TSINGHUA = 'https://cloud.tsinghua.edu.cn/f/'


def _releases(stem: str, **ids: str) -> Dict[str, str]:
    """The release files ``{stem}_{arch}_in1k_{size}.pth`` (key ``arch`` for 224 px,
    ``arch_384`` for 384 px) and their pages on the authors' Tsinghua cloud (share ids)."""
    def file(key):
        arch, _, size = key.partition('_')
        return f'{stem}_{arch}_in1k_{size or 224}.pth'
    return {file(key): f'{_TSINGHUA}{share}/' for key, share in ids.items()}


def _timm_224(key: str, stem: str, suffix: str, note: str) -> Tuple[TimmModel, ...]:
    """The 224 px classifiers of a release as timm models ``{key}_{arch}``."""
    return tuple(TimmModel(f'{key}_{arch}', arch, f'{stem}_{arch}_in1k_224.pth',
                           f'DAT-{arch[0].upper()}{suffix} ({note}).')
                 for arch in ('tiny', 'small', 'base'))


# The 2022 DAT files are listed in the README of the June 2022 commit that published them.
register_family(Family(
    name='DAT', key='dat', backbone=DAT, paper='arXiv:2201.00520', convert=convert_dat2022,
    converter_script='tools/model_converters/dat2mmpretrain.py',
    readme='https://github.com/LeapLabTHU/DAT/blob/42b489e/README.md',
    releases=_releases('dat', tiny='1367349deefc48efa650', small='f04b18081e3e4606adb7',
                       base='a8d2a9645d454120b635', base_384='cf6a6b543cd64e0d8e43'),
    timm_models=_timm_224('dat', 'dat', '', '2022 release, 224 px, window 7') + (
        TimmModel('dat_base_384', 'base', 'dat_base_in1k_384.pth',
                  'DAT-B fine-tuned at 384 px (2022 release, window 12).', 384,
                  kwargs=dict(img_size=384, window_size=12)),),
    cell_centre=0.5, drop_path=dict(tiny=0.2, small=0.3, base=0.5)))

# The DAT++ README (main) names DAT-T++'s file; the other names follow its pattern.
register_family(Family(
    name='DAT++', key='datpp', backbone=DATPlusPlus, paper='arXiv:2309.01430',
    convert=convert_datpp, converter_script='tools/model_converters/datpp2mmpretrain.py',
    readme='https://github.com/LeapLabTHU/DAT/blob/main/README.md',
    releases=_releases('dat_pp', tiny='14c5ddae10b642e68089', small='4c2a76360c964fbd81d5',
                       base='8e30492404d348d89f25', base_384='032dc804cdf44bf18bb5'),
    # the release tests DAT-B++ at 384 by resizing to 384 x 384, without a crop; its
    # position tables stay those of 224 px
    timm_models=_timm_224('datpp', 'dat_pp', '++', 'DAT++ release, 224 px') + (
        TimmModel('datpp_base_384', 'base', 'dat_pp_base_in1k_384.pth',
                  'DAT-B++ fine-tuned at 384 px (DAT++ release; position tables of 224 px).',
                  384, crop_pct=1.0),),
    cell_centre=0.0, drop_path=dict(tiny=0.2, small=0.4, base=0.7)))
