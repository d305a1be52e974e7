"""``dat::`` config paths, as ``mmpretrain::`` and ``mmdet::`` work in mmengine::

    _base_ = ['dat::dat/dat-tiny_8xb128-amp_in1k.py']   # in a config of another project

The path is read from the ``.mim/configs`` folder of the imported ``dat`` package (made by
setup.py: copies in a wheel, links to the checkout in an editable install). Our tools and
``mim train dat`` import ``dat`` before they load a config; a script of your own does
``import dat`` first.

mmengine 0.10.7 can't do this by itself: it accepts ``PACKAGE::`` only for the OpenMMLab
packages it lists, it looks for a package's folder beside its metadata in site-packages
(where an editable install, PEP 660, keeps no code), and it would build what a ``dat::``
base defines in a ``dat`` registry scope, which does not exist. Our configs name their own
scope (``default_scope``: mmpretrain, mmdet or mmseg) and ``custom_imports``, so a ``dat::``
base is read as if it were inherited by its path.
"""
import os.path as osp

PREFIX = 'dat::'
CONFIG_DIR = osp.join(osp.dirname(osp.abspath(__file__)), '.mim', 'configs')


def register_config_scope() -> None:
    """Let mmengine's ``Config.fromfile`` resolve ``dat::`` paths (idempotent)."""
    try:
        from mmengine.config import Config
    except ImportError:  # no mmengine: there are no configs to resolve
        return
    resolve = Config._get_cfg_path
    if getattr(resolve, 'knows_dat', False):
        return

    def get_cfg_path(cfg_path: str, filename: str):
        if not cfg_path.startswith(PREFIX):
            return resolve(cfg_path, filename)
        path = osp.join(CONFIG_DIR, cfg_path[len(PREFIX):])
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'{cfg_path} (in {filename}): no such config in {CONFIG_DIR}' +
                ('' if osp.isdir(CONFIG_DIR) else
                 '; that folder is made when dat is installed (pip install, or '
                 'bash tools/install.sh for an editable install)'))
        return path, None

    get_cfg_path.knows_dat = True
    Config._get_cfg_path = staticmethod(get_cfg_path)
