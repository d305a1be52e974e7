"""Register :class:`dat.models.DAT` as ``mmdet``'s backbone ``DAT``."""
from mmdet.registry import MODELS

from dat.models import DAT

MODELS.register_module(name='DAT', module=DAT, force=True)

__all__ = ['DAT']
