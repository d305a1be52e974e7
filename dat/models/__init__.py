from .backbones import DAT, DATPlusPlus

__all__ = ['DAT', 'DATPlusPlus']
