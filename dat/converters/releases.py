"""The authors' released ImageNet checkpoints, which this project does not host.

:data:`RELEASES` names each release file, where the authors publish it and the converter
that turns it into our parameter names; it is made from the families' entries
(:mod:`dat.families`). The model hub of mmpretrain
(``pretrained=True`` resolves to ``dat-release://FILE``, see :func:`load_from_release`) and
the timm front door (:mod:`dat.timm_models`) read it, so that asking for weights that are
not on this machine fails with that information instead of giving random weights.

:func:`read_release` reads a release file (or an already converted one) without running
code from it and converts it with its family's converter, with the same checks as
``tools/model_converters/*2mmpretrain.py``.
"""
import os
from typing import Dict, NamedTuple, Tuple

import torch
from mmengine.runner.checkpoint import CheckpointLoader

from dat.families import FAMILIES, Family, for_each_family
from dat.models.checkpoint import CheckpointNotFoundError, read_checkpoint, split_checkpoint


class Release(NamedTuple):
    """A checkpoint file of the authors' release."""
    file: str  #: the file name the authors give it
    family: str  #: the name of its family in :data:`dat.families.FAMILIES` ('DAT', 'DAT++')
    page: str  #: where the authors publish it (their download link)
    readme: str  #: the authors' README that lists it

    @property
    def paper(self) -> str:
        return FAMILIES[self.family].paper

    @property
    def converter(self) -> str:
        return FAMILIES[self.family].converter_script

    def missing(self, what: str) -> str:
        """Why ``what`` has no weights here, and how to get them."""
        stem = self.file.rsplit('.', 1)[0]
        return (f'{what}: this project hosts no converted weights. They are the authors\' '
                f'{self.family} release file {self.file}, published at {self.page} (linked '
                f'from {self.readme}). Download it, then either convert it: python '
                f'{self.converter} {self.file} checkpoints/{stem}_converted.pth and pass '
                'that path as pretrained=..., or (timm) pass the release file itself with '
                f"pretrained_cfg_overlay=dict(file='{self.file}'), converted on load")


#: Release files by name, from the families' ``releases``.
RELEASES: Dict[str, Release] = {}


def _add_releases(family: Family) -> None:
    RELEASES.update({file: Release(file, family.name, page, family.readme)
                     for file, page in family.releases.items()})


for_each_family(_add_releases)

#: The ``Weights`` of the classification metafiles: ``dat-release://FILE``.
SCHEME = 'dat-release://'


def load_from_release(filename: str, map_location=None):
    """mmengine's loader of ``dat-release://FILE`` (what ``pretrained=True`` of the
    mmpretrain model hub resolves to): we host no such file, so this raises an error that
    names the release file, where the authors publish it and the converter command."""
    name = filename[len(SCHEME):]
    release = RELEASES.get(name)
    if release is None:
        raise CheckpointNotFoundError(f'{filename}: not a known release file; known: '
                                      f'{", ".join(RELEASES)}')
    raise CheckpointNotFoundError(release.missing(f'pretrained=True ({filename})'))


CheckpointLoader.register_scheme(prefixes=SCHEME, loader=load_from_release, force=True)


def read_release(path: str, family: str) -> Tuple[Dict[str, torch.Tensor], Dict]:
    """The weights of a ``family`` (a name in :data:`dat.families.FAMILIES`) classifier from
    ``path``: a release file (converted here by the family's converter, with its checks) or
    one that is already converted (``backbone.*`` and ``head.fc.*`` keys, as the converters
    and mmpretrain write).

    Returns:
        tuple: ``(state_dict, info)``; ``info`` is what the converter read off the file
        (arch, img_size, ...), empty for a converted file.

    Raises:
        CheckpointError: the file cannot be read or is refused (see
            :func:`dat.models.checkpoint.read_checkpoint`).
        ConversionError: a release file with unknown, missing or mis-shaped keys.
    """
    checkpoint = read_checkpoint(path)
    state, _ = split_checkpoint(checkpoint, os.fspath(path))
    if any(k.startswith('backbone.') for k in state):
        return state, {}
    return FAMILIES[family].convert(checkpoint)
