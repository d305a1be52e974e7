"""DAT: Vision Transformer with Deformable Attention, as an OpenMMLab-style toolbox."""
from .version import __version__

__all__ = ['__version__']
