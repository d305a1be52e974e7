"""DAT: Vision Transformer with Deformable Attention, as an OpenMMLab-style toolbox.

Importing dat registers our models and changes nothing in mmengine; what our tools change
in it (``dat::`` config paths, the reader of local checkpoint files) is applied explicitly
by :func:`dat.mmengine_patches.apply`.
"""
import warnings

# mmengine 0.10.7 (pinned) resolves `mmpretrain::` / `mmdet::` / `mmseg::` config paths with
# `mmengine.utils.is_installed`, which imports and reloads `pkg_resources`; setuptools >= 80.9
# then warns twice per command that pkg_resources is deprecated. Silence exactly that warning.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated as an API',
                        category=UserWarning)

from . import timm_models  # noqa: E402,F401  (timm.create_model('dat_tiny'), ...)
from .version import __version__  # noqa: E402

__all__ = ['__version__']
