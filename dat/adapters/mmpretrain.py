"""Register :class:`dat.models.DAT` as ``mmpretrain``'s backbone ``DAT``."""
from mmpretrain.registry import MODELS

from dat.models import DAT

MODELS.register_module(name='DAT', module=DAT, force=True)

__all__ = ['DAT']
