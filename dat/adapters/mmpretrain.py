"""Register :class:`dat.models.DAT` and :class:`dat.models.DATPlusPlus` as ``mmpretrain``'s
backbones ``DAT`` and ``DATPlusPlus``, and the DAT classification models with mmpretrain's
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

The hub gets the models of ``configs/dat/metafile.yml`` and ``configs/datpp/metafile.yml``
(listed with the other metafiles in the repository's ``model-index.yml``). It needs the
repository checkout (``pip install -e .``); without one only the backbones are registered.
"""
from pathlib import Path

from mmpretrain.registry import MODELS, TRANSFORMS

from dat.models import DAT, DATPlusPlus
from dat.transforms import CheckedLoadImageFromFile

MODELS.register_module(name='DAT', module=DAT, force=True)
MODELS.register_module(name='DATPlusPlus', module=DATPlusPlus, force=True)
TRANSFORMS.register_module(module=CheckedLoadImageFromFile, force=True)

#: The checkout's root: config paths in the metafiles are relative to it.
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Metafiles of classification models; detection / segmentation ones belong to mmdet / mmseg.
CLASSIFICATION_METAFILES = ('configs/dat/metafile.yml', 'configs/datpp/metafile.yml')


def register_model_index() -> None:
    """Add the DAT classification models to ``mmpretrain.apis.ModelHub`` (once)."""
    from mmpretrain.apis import ModelHub
    for metafile in CLASSIFICATION_METAFILES:
        path = REPO_ROOT / metafile
        if path.is_file() and path not in _registered:
            ModelHub.register_model_index(path, config_prefix=REPO_ROOT)
            _registered.add(path)


_registered = set()
register_model_index()

__all__ = ['DAT', 'DATPlusPlus', 'register_model_index']
