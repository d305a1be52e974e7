from .dat import DAT
from .datpp import DATPlusPlus

__all__ = ['DAT', 'DATPlusPlus']
