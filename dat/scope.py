"""``dat::`` config paths, as ``mmpretrain::`` and ``mmdet::`` work in mmengine::

    _base_ = ['dat::dat/dat-tiny_8xb128-amp_in1k.py']   # in a config of another project

The path is read from the ``.mim/configs`` folder of the imported ``dat`` package (made by
setup.py: copies in a wheel, links to the checkout in an editable install).
:func:`resolve_config_path` finds the file; mmengine uses it for ``_base_`` entries once
:func:`dat.mmengine_patches.apply` has run (our tools and ``mim train dat`` do that before
they load a config; a script of your own calls it first).

mmengine 0.10.7 can't do this by itself: it accepts ``PACKAGE::`` only for the OpenMMLab
packages it lists, it looks for a package's folder beside its metadata in site-packages
(where an editable install, PEP 660, keeps no code), and it would build what a ``dat::``
base defines in a ``dat`` registry scope, which does not exist. Our configs name their own
scope (``default_scope``: mmpretrain, mmdet or mmseg) and ``custom_imports``, so a ``dat::``
base is read as if it were inherited by its path.
"""
import os.path as osp
from typing import Optional

PREFIX = 'dat::'
CONFIG_DIR = osp.join(osp.dirname(osp.abspath(__file__)), '.mim', 'configs')


def resolve_config_path(cfg_path: str, filename: Optional[str] = None) -> str:
    """The file of a ``dat::`` config path (``filename``: the config that names it, for
    the message).

    Raises:
        FileNotFoundError: no such config among the installed package's configs.
    """
    if not cfg_path.startswith(PREFIX):
        raise ValueError(f'{cfg_path}: not a {PREFIX} config path')
    path = osp.join(CONFIG_DIR, cfg_path[len(PREFIX):])
    if not osp.isfile(path):
        where = f' (in {filename})' if filename else ''
        raise FileNotFoundError(
            f'{cfg_path}{where}: no such config in {CONFIG_DIR}' +
            ('' if osp.isdir(CONFIG_DIR) else
             '; that folder is made when dat is installed (pip install, or '
             'bash tools/install.sh for an editable install)'))
    return path
