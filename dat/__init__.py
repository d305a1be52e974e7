"""DAT: Vision Transformer with Deformable Attention, as an OpenMMLab-style toolbox.

Importing dat registers our models (with timm: ``timm.create_model('dat_tiny')``) and
changes nothing else: no warning filters, nothing in mmengine. What our tools change in
mmengine (``dat::`` config paths, the reader of local checkpoint files) is applied
explicitly by :func:`dat.mmengine_patches.apply`; :func:`init` does that and registers our
models with an OpenMMLab library, in one line::

    import dat; dat.init('mmpretrain')   # then mmpretrain.get_model('dat-tiny_...', ...)
"""
import importlib

from . import timm_models  # noqa: F401  (timm.create_model('dat_tiny'), ...)
from .version import __version__

#: The OpenMMLab libraries that :func:`init` can set up.
LIBRARIES = ('mmpretrain', 'mmdet', 'mmseg')


def init(library: str = 'mmpretrain') -> None:
    """Set up ``library`` for DAT, as our tools do: register the DAT models with it
    (``dat.adapters.<library>``) and apply :func:`dat.mmengine_patches.apply` (``dat::``
    config paths; mmengine reads local checkpoints with dat's reader, which runs no code
    from them). Idempotent."""
    if library not in LIBRARIES:
        raise ValueError(f'library={library!r}: choose one of {", ".join(LIBRARIES)}')
    importlib.import_module(f'dat.adapters.{library}')
    from . import mmengine_patches
    mmengine_patches.apply()


__all__ = ['LIBRARIES', '__version__', 'init']
