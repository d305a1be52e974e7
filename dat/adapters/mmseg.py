"""Register :class:`dat.models.DAT` as ``mmseg``'s backbone ``DAT``."""
from mmseg.registry import MODELS

from dat.models import DAT

MODELS.register_module(name='DAT', module=DAT, force=True)

__all__ = ['DAT']
