"""Register :class:`dat.models.DAT` and :class:`dat.models.DATPlusPlus` as ``mmdet``'s backbones
``DAT`` and ``DATPlusPlus``."""
from mmdet.registry import MODELS

from dat.models import DAT, DATPlusPlus

MODELS.register_module(name='DAT', module=DAT, force=True)
MODELS.register_module(name='DATPlusPlus', module=DATPlusPlus, force=True)

__all__ = ['DAT', 'DATPlusPlus']
