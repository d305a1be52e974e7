"""Packaging (metadata in setup.cfg).

Like the OpenMMLab packages, ``dat`` carries its configs, tools and model index in
``dat/.mim/``, where ``mim`` (``mim train dat CONFIG``, ``mim search dat``) and mmengine's
``dat::`` config paths look for them. An editable install links them to the checkout's
(``dat/.mim/configs -> ../../configs``, ...); a wheel or a normal install gets copies.
"""
import os
import os.path as osp
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = osp.dirname(osp.abspath(__file__))
MIM_FILES = ('configs', 'tools', 'model-index.yml')


def _remove(path):
    if osp.islink(path) or osp.isfile(path):
        os.remove(path)
    elif osp.isdir(path):
        shutil.rmtree(path)


def _copy(src, dst):
    if osp.isdir(src):
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
    else:
        shutil.copyfile(src, dst)


def add_mim_files(package_dir, link):
    """Put MIM_FILES in ``package_dir/.mim``: symbolic links to the checkout (copies where
    links can't be made) or, with ``link=False``, copies."""
    mim = osp.join(package_dir, '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in MIM_FILES:
        src, dst = osp.join(ROOT, name), osp.join(mim, name)
        _remove(dst)
        if link:
            try:
                os.symlink(osp.relpath(src, mim), dst)
                continue
            except OSError:
                pass
        _copy(src, dst)


class BuildPy(build_py):
    """Adds ``dat/.mim``: links in the checkout for editable installs, copies in the build
    directory for wheels (the checkout is left as it is)."""

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):
            add_mim_files(osp.join(ROOT, 'dat'), link=True)
        else:
            add_mim_files(osp.join(self.build_lib, 'dat'), link=False)


setup(cmdclass={'build_py': BuildPy})
