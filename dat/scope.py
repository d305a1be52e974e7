"""``dat::`` config paths for mmengine, as ``mmpretrain::`` and ``mmdet::`` work::

    _base_ = ['dat::dat/dat-tiny_8xb128_in1k.py']   # in a config of another project

mmengine reads such a path from the ``.mim/configs`` folder of the installed package
(``dat/.mim``, made by setup.py). mmengine 0.10.7 needs two things that importing ``dat``
provides (our tools and ``mim train dat`` import it before they load a config; a script of
your own does ``import dat`` first):

- ``dat`` in its table of packages that may be named that way
  (``mmengine.config.utils.MODULE2PACKAGE``);
- the package's folder. mmengine looks for it beside the package's metadata, in
  site-packages, which is not where an editable install (PEP 660, setuptools >= 64) keeps the
  code, so for ``dat`` the folder of the imported package is given instead.
"""
import os.path as osp

PACKAGE_DIR = osp.dirname(osp.abspath(__file__))


def register_config_scope() -> None:
    """Let mmengine's ``Config.fromfile`` resolve ``dat::`` paths (idempotent)."""
    try:
        from mmengine.config import config as config_module
        from mmengine.config.utils import MODULE2PACKAGE
    except ImportError:  # no mmengine: there are no configs to resolve
        return
    MODULE2PACKAGE.setdefault('dat', 'dat')
    find_package = config_module.get_installed_path
    if getattr(find_package, 'knows_dat', False):
        return

    def get_installed_path(package: str) -> str:
        return PACKAGE_DIR if package == 'dat' else find_package(package)

    get_installed_path.knows_dat = True
    config_module.get_installed_path = get_installed_path
