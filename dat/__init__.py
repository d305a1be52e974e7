"""DAT: Vision Transformer with Deformable Attention, as an OpenMMLab-style toolbox."""
import warnings

from .version import __version__

# mmengine 0.10.7 (pinned) resolves `mmpretrain::` / `mmdet::` / `mmseg::` config paths with
# `mmengine.utils.is_installed`, which imports and reloads `pkg_resources`; setuptools >= 80.9
# then warns twice per command that pkg_resources is deprecated. Silence exactly that warning.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated as an API',
                        category=UserWarning)

__all__ = ['__version__']
