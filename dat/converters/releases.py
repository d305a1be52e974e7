"""The authors' released ImageNet checkpoints, which this project does not host.

One table, :data:`RELEASES`, names each release file, where the authors publish it and the
converter that turns it into our parameter names. The model hub of mmpretrain
(``pretrained=True`` resolves to ``dat-release://FILE``, see :func:`load_from_release`) and
the timm front door (:mod:`dat.timm_models`) read it, so that asking for weights that are
not on this machine fails with that information instead of giving random weights.

:func:`read_release` reads a release file (or an already converted one) without running
code from it and converts it with the converter of :mod:`dat.converters`, with the same
checks as ``tools/model_converters/*2mmpretrain.py``.
"""
import os
from typing import Dict, NamedTuple, Tuple

import torch
from mmengine.runner.checkpoint import CheckpointLoader

from dat.models.checkpoint import CheckpointNotFoundError, read_checkpoint, split_checkpoint

DAT_README = 'https://github.com/LeapLabTHU/DAT/blob/42b489e/README.md'
DATPP_README = 'https://github.com/LeapLabTHU/DAT/blob/main/README.md'


class Release(NamedTuple):
    """A checkpoint file of the authors' release."""
    file: str  #: the file name the authors give it
    family: str  #: 'DAT' (the 2022 release) or 'DAT++'
    page: str  #: where the authors publish it (their download link)
    readme: str  #: the authors' README that lists it

    @property
    def paper(self) -> str:
        return 'arXiv:2201.00520' if self.family == 'DAT' else 'arXiv:2309.01430'

    @property
    def converter(self) -> str:
        script = 'dat2mmpretrain.py' if self.family == 'DAT' else 'datpp2mmpretrain.py'
        return f'tools/model_converters/{script}'

    def missing(self, what: str) -> str:
        """Why ``what`` has no weights here, and how to get them."""
        stem = self.file.rsplit('.', 1)[0]
        return (f'{what}: this project hosts no converted weights. They are the authors\' '
                f'{self.family} release file {self.file}, published at {self.page} (linked '
                f'from {self.readme}). Download it, then either convert it: python '
                f'{self.converter} {self.file} checkpoints/{stem}_converted.pth and pass '
                'that path as pretrained=..., or (timm) pass the release file itself with '
                f"pretrained_cfg_overlay=dict(file='{self.file}'), converted on load")


#: Release files by name. The 2022 DAT files are listed in the README of the June 2022
#: commit that published them; the DAT++ ones in the README of main (it names DAT-T++'s
#: file, dat_pp_tiny_in1k_224.pth; the other DAT++ names follow its pattern).
RELEASES: Dict[str, Release] = {r.file: r for r in [
    Release('dat_tiny_in1k_224.pth', 'DAT',
            'https://cloud.tsinghua.edu.cn/f/1367349deefc48efa650/', DAT_README),
    Release('dat_small_in1k_224.pth', 'DAT',
            'https://cloud.tsinghua.edu.cn/f/f04b18081e3e4606adb7/', DAT_README),
    Release('dat_base_in1k_224.pth', 'DAT',
            'https://cloud.tsinghua.edu.cn/f/a8d2a9645d454120b635/', DAT_README),
    Release('dat_base_in1k_384.pth', 'DAT',
            'https://cloud.tsinghua.edu.cn/f/cf6a6b543cd64e0d8e43/', DAT_README),
    Release('dat_pp_tiny_in1k_224.pth', 'DAT++',
            'https://cloud.tsinghua.edu.cn/f/14c5ddae10b642e68089/', DATPP_README),
    Release('dat_pp_small_in1k_224.pth', 'DAT++',
            'https://cloud.tsinghua.edu.cn/f/4c2a76360c964fbd81d5/', DATPP_README),
    Release('dat_pp_base_in1k_224.pth', 'DAT++',
            'https://cloud.tsinghua.edu.cn/f/8e30492404d348d89f25/', DATPP_README),
    Release('dat_pp_base_in1k_384.pth', 'DAT++',
            'https://cloud.tsinghua.edu.cn/f/032dc804cdf44bf18bb5/', DATPP_README),
]}

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
    """The weights of a ``family`` ('DAT' or 'DAT++') classifier from ``path``: a release
    file (converted here, with the converter's checks) or one that is already converted
    (``backbone.*`` and ``head.fc.*`` keys, as the converters and mmpretrain write).

    Returns:
        tuple: ``(state_dict, info)``; ``info`` is what the converter read off the file
        (arch, img_size, ...), empty for a converted file.

    Raises:
        CheckpointError: the file cannot be read or is refused (see
            :func:`dat.models.checkpoint.read_checkpoint`).
        ConversionError: a release file with unknown, missing or mis-shaped keys.
    """
    from dat.converters import convert_dat2022
    from dat.converters.datpp import convert_datpp

    checkpoint = read_checkpoint(path)
    state, _ = split_checkpoint(checkpoint, os.fspath(path))
    if any(k.startswith('backbone.') for k in state):
        return state, {}
    convert = convert_dat2022 if family == 'DAT' else convert_datpp
    return convert(checkpoint)
