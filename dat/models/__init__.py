from .backbones import DAT

__all__ = ['DAT']
