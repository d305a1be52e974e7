"""Register the backbone of every family (:mod:`dat.families`: ``DAT``, ``DATPlusPlus``) as
``mmpretrain`` backbones, and the DAT classification models with mmpretrain's
model hub, and :class:`~dat.transforms.CheckedLoadImageFromFile` as a transform.

After ``import dat.adapters.mmpretrain``::

    >>> import mmpretrain
    >>> mmpretrain.list_models('dat-*')
    ['dat-base_8xb128-amp_in1k', 'dat-base_8xb24-amp_in1k-384px', 'dat-small_8xb128-amp_in1k',
     'dat-tiny_8xb128-amp_in1k']
    >>> mmpretrain.list_models('datpp*')
    ['datpp-base_8xb24-amp_in1k-384px', 'datpp-base_8xb64-amp_in1k', 'datpp-small_8xb128-amp_in1k',
     'datpp-tiny_8xb128-amp_in1k']
    >>> model = mmpretrain.get_model('dat-tiny_8xb128-amp_in1k', pretrained='dat-tiny.pth')

:func:`get_model` here is mmpretrain's with our check of the weights: a file that does not
fit the DAT backbone is refused (mmpretrain's, through mmengine's ``load_checkpoint``, loads
what fits and logs the rest).

The hub gets the models of ``configs/dat/metafile.yml`` and ``configs/datpp/metafile.yml``
(listed with the other metafiles in ``model-index.yml``), read from ``dat/.mim``: copies in
a wheel or a normal install, links to the checkout in an editable one (setup.py), so the
names work wherever ``dat`` is installed. A checkout used through ``PYTHONPATH`` alone,
without ``dat/.mim``, serves its own ``configs``.

We host no weights: a metafile's ``Weights`` is ``dat-release://FILE``, the authors'
release file, and ``pretrained=True`` raises an error that names that file, where the
authors publish it and the converter command (:mod:`dat.converters.releases`), instead of
building a model with random weights.
"""
import os
from pathlib import Path
from typing import Optional, Union

from mmpretrain.registry import MODELS, TRANSFORMS

import dat.converters.releases  # noqa: F401  (the loader of dat-release://)
from dat.families import register_backbones
from dat.models.checkpoint import check_fit
from dat.transforms import CheckedLoadImageFromFile

register_backbones(MODELS)
TRANSFORMS.register_module(module=CheckedLoadImageFromFile, force=True)

#: Metafiles of classification models; detection / segmentation ones belong to mmdet / mmseg.
CLASSIFICATION_METAFILES = ('configs/dat/metafile.yml', 'configs/datpp/metafile.yml')
_PACKAGE = Path(__file__).resolve().parents[1]


def model_index_root() -> Optional[Path]:
    """The folder that the metafiles' config paths are relative to: the installed
    package's ``.mim``, else the checkout that holds the package; None if neither has the
    configs."""
    for root in (_PACKAGE / '.mim', _PACKAGE.parent):
        if all((root / metafile).is_file() for metafile in CLASSIFICATION_METAFILES):
            return root
    return None


def register_model_index() -> None:
    """Add the DAT classification models to ``mmpretrain.apis.ModelHub`` (once)."""
    from mmpretrain.apis import ModelHub
    root = model_index_root()
    if root is None:
        return
    for metafile in CLASSIFICATION_METAFILES:
        path = (root / metafile).resolve()
        if path not in _registered:
            ModelHub.register_model_index(root / metafile, config_prefix=root)
            _registered.add(path)


_registered = set()
register_model_index()


def get_model(model, pretrained: Union[bool, str, os.PathLike] = False, device=None,
              **kwargs):
    """``mmpretrain.get_model`` (same arguments), and the weights must fit the DAT backbone.

    mmpretrain loads ``pretrained`` with mmengine's ``load_checkpoint``, which takes the keys
    that fit and logs the others; here a file that does not fit the backbone is then refused
    with :class:`~dat.models.checkpoint.CheckpointError` (``the weights do not fit the DAT
    backbone (embed_dims=..., depths=...): N missing from the checkpoint (first: ...)``),
    and the model is not returned. To load what fits, call ``mmpretrain.get_model``.
    """
    from mmpretrain.apis import get_model as mmpretrain_get_model
    net = mmpretrain_get_model(model, pretrained=pretrained, device=device, **kwargs)
    source = pretrained
    if pretrained is True:  # what mmpretrain resolved it to: load_from or the hub's weights
        source = net._config.get('load_from') or getattr(net._metainfo, 'weights', None)
    if source:
        check_fit(net, os.fspath(source), backbones_only=True)
    return net


__all__ = ['get_model', 'register_model_index']
