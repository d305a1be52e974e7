"""Register :class:`dat.models.DAT` and :class:`dat.models.DATPlusPlus` as ``mmdet``'s backbones
``DAT`` and ``DATPlusPlus``, and :class:`~dat.transforms.CheckedLoadImageFromFile` as a
transform."""
from mmdet.registry import MODELS, TRANSFORMS

from dat.models import DAT, DATPlusPlus
from dat.transforms import CheckedLoadImageFromFile

MODELS.register_module(name='DAT', module=DAT, force=True)
MODELS.register_module(name='DATPlusPlus', module=DATPlusPlus, force=True)
TRANSFORMS.register_module(module=CheckedLoadImageFromFile, force=True)

__all__ = ['DAT', 'DATPlusPlus']
