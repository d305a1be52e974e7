"""DAT: Vision Transformer with Deformable Attention, as an OpenMMLab-style toolbox."""
from .scope import register_config_scope
from .version import __version__

register_config_scope()

__all__ = ['__version__']
