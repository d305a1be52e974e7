"""The changes dat makes to mmengine's own behaviour: all here, applied only when asked.

Importing ``dat`` (or ``dat.models``, ``dat.engine``, the adapters) changes nothing in
mmengine. Our tools call :func:`apply` when they read a config
(:func:`dat.cli.load_config`: ``tools/train.py``, ``tools/test.py``, ``mim train dat``, the
demo, the analysis tools); a script of your own that wants the same calls it first::

    import dat.mmengine_patches
    dat.mmengine_patches.apply()   # idempotent; dat.mmengine_patches.restore() undoes it

What :func:`apply` changes (checked against mmengine 0.10.7; each replaced or wrapped
function is pinned by ``tests/test_tools/test_mmengine_patches.py``, which fails with what
to do when an mmengine upgrade changes it; docs/internals.md lists them):

1. ``dat::`` config paths (``_base_ = ['dat::dat/dat-tiny_8xb128-amp_in1k.py']``), as
   ``mmpretrain::`` works: wraps ``mmengine.config.Config._get_cfg_path`` (private; mmengine
   has no public hook for base-config paths). Other paths go to mmengine's function
   unchanged, and what it finds for a ``PACKAGE::`` path (``mmdet::``, ...) is kept for the
   process (its lookup reads the package's whole model index each time). The ``dat::``
   file is found by :func:`dat.scope.resolve_config_path`.
2. Local checkpoint files read by mmengine (Runner ``load_from`` and ``--resume``,
   ``load_checkpoint``, ``mmpretrain.get_model(..., pretrained=FILE)``, the inferencers):
   the loader of prefix ``''`` of ``CheckpointLoader`` (public ``register_scheme``, but it
   replaces mmengine's ``load_from_local`` for the whole process) becomes
   :func:`dat.models.checkpoint.load_from_local`. mmengine 0.10.7's loader calls
   ``torch.load`` without ``weights_only``: with torch >= 2.6 that refuses mmengine's own
   Runner checkpoints (their ``HistoryBuffer`` and numpy records) with a long pickle error,
   and a truncated or damaged file fails deep in ``torch.load``. Ours reads those records
   and no code, and names the file and what is wrong with it in one line
   (:class:`~dat.models.checkpoint.CheckpointError`).

Not a patch, but a private method: :class:`dat.engine.AtomicCheckpointHook` (used when a
config names it) overrides ``CheckpointHook._save_checkpoint_with_step`` in its subclass; its
pin is in the same test file.
"""
from typing import Any, Dict, Optional, Tuple

from .scope import PREFIX, resolve_config_path

#: The mmengine version whose internals the patches were written for and pinned against.
CHECKED_MMENGINE = '0.10.7'

#: What apply() replaced, to put back: {'config': the original staticmethod object,
#: 'loader': the previous loader of prefix ''}. Empty when not applied.
_saved: Dict[str, Any] = {}


def _wrap_get_cfg_path(original):
    """mmengine's ``Config._get_cfg_path(cfg_path, filename) -> (path, scope)``, plus
    ``dat::`` paths (scope None: a ``dat::`` base is read as if inherited by its path; our
    configs name their own ``default_scope`` and ``custom_imports``)."""

    #: External (``PACKAGE::``) paths found so far, with their scopes.
    found: Dict[str, Tuple[str, Optional[str]]] = {}

    def _get_cfg_path(cfg_path: str, filename: str):
        if cfg_path.startswith(PREFIX):
            return resolve_config_path(cfg_path, filename), None
        if '::' not in cfg_path:
            return original(cfg_path, filename)
        # A PACKAGE:: path names the same file whichever config inherits it. mmengine looks
        # it up in the package's whole model index (over 100 YAML files for mmdet) and
        # re-imports pkg_resources for each lookup, about 0.5 s a base and 2 s a det / seg
        # config; each path is looked up once per process (a failed lookup is not kept).
        if cfg_path not in found:
            found[cfg_path] = original(cfg_path, filename)
        return found[cfg_path]

    _get_cfg_path.dat_patch = True
    return _get_cfg_path


def applied() -> bool:
    """Whether :func:`apply` is in effect."""
    return bool(_saved)


def apply() -> None:
    """Apply the patches listed in the module doc (a second call does nothing)."""
    if _saved:
        return
    from mmengine.config import Config
    from mmengine.runner.checkpoint import CheckpointLoader

    from dat.models.checkpoint import load_from_local

    original = Config.__dict__['_get_cfg_path']  # the staticmethod object itself
    previous_loader = CheckpointLoader._schemes.get('')
    Config._get_cfg_path = staticmethod(_wrap_get_cfg_path(original.__func__))
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
    _saved.update(config=original, loader=previous_loader)


def restore() -> None:
    """Undo :func:`apply` (for tests; nothing happens if it is not applied)."""
    if not _saved:
        return
    from mmengine.config import Config
    from mmengine.runner.checkpoint import CheckpointLoader

    Config._get_cfg_path = _saved['config']
    if _saved['loader'] is None:
        CheckpointLoader._schemes.pop('', None)
    else:
        CheckpointLoader.register_scheme(prefixes='', loader=_saved['loader'], force=True)
    _saved.clear()


def is_mmengine_default() -> bool:
    """Whether mmengine's config-path resolver and local checkpoint loader are its own."""
    from mmengine.config import Config
    from mmengine.runner import checkpoint

    return (not getattr(Config._get_cfg_path, 'dat_patch', False)
            and checkpoint.CheckpointLoader._schemes.get('') is checkpoint.load_from_local)


__all__ = ['CHECKED_MMENGINE', 'applied', 'apply', 'is_mmengine_default', 'restore']
