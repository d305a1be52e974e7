from .dat import DAT

__all__ = ['DAT']
