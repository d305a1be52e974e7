"""What the command-line tools share: a simple mistake ends in one line, not a traceback.

A missing or broken config, a checkpoint that cannot be read (random bytes, a truncated
file) or that is refused, and the like, print ``error: <file>: <problem>`` on stderr and exit
with status 1. :func:`one_line_errors` also catches a
:class:`~dat.models.checkpoint.CheckpointError` raised deep inside mmengine's Runner or an
inferencer, whose loader of local files is :mod:`dat.models.checkpoint`'s once
:func:`load_config` has applied :mod:`dat.mmengine_patches`.

``python -m dat.cli CONFIG [CHECKPOINT]`` checks both; ``tools/dist_*.sh`` run it before
they start the processes (so that a mistake is one line, not one per process plus the
launcher's report).
"""
import functools
import os.path as osp
import sys
import warnings
from typing import Callable, NoReturn, Optional

from dat.models.checkpoint import CheckpointError, read_checkpoint


def fail(message: str) -> NoReturn:
    """Exit with status 1 after printing ``error: message`` on stderr."""
    raise SystemExit(f'error: {message}')


def one_line(err: BaseException) -> str:
    """An exception's message on one line."""
    return ' '.join(str(err).split()) or type(err).__name__


def quiet_known_warnings() -> None:
    """Silence, for our tools, the warning that mmengine 0.10.7 causes at every command:
    it resolves ``mmpretrain::`` / ``mmdet::`` / ``mmseg::`` config paths with
    ``mmengine.utils.is_installed``, which imports ``pkg_resources``, and setuptools >= 80.9
    warns that pkg_resources is deprecated. Importing dat sets no filter."""
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated as an API',
                            category=UserWarning)


def load_config(path: str, cfg_options: Optional[dict] = None):
    """``mmengine.Config.fromfile`` (plus ``--cfg-options``), failing in one line.

    Applies :func:`dat.mmengine_patches.apply` first (``dat::`` bases, and the reader of
    local checkpoint files that the Runner and the inferencers then use), and
    :func:`quiet_known_warnings`. ``path`` may be a
    ``dat::`` path itself (``dat::dat/dat-tiny_8xb128-amp_in1k.py``).
    """
    from mmengine.config import Config

    from dat import mmengine_patches
    from dat.scope import PREFIX, resolve_config_path

    quiet_known_warnings()
    mmengine_patches.apply()
    if path.startswith(PREFIX):
        try:
            path = resolve_config_path(path)
        except FileNotFoundError as err:
            fail(one_line(err))
    if not osp.isfile(path):
        fail(f'no such config: {path}')
    try:
        cfg = Config.fromfile(path)
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
    except Exception as err:  # syntax errors, missing bases, bad options: all user input
        fail(f'{path}: cannot be read as a config: {one_line(err)[:300]}')
    return cfg


def data_preprocessor(cfg) -> dict:
    """The data preprocessor settings of a config (mean, std, ...): the top-level
    ``data_preprocessor`` (mmpretrain's place), else ``model.data_preprocessor`` (mmdet's
    and mmseg's), else ``{}``."""
    return cfg.get('data_preprocessor') or cfg.get('model', {}).get('data_preprocessor') or {}


def check_checkpoint(path: str) -> None:
    """Fail in one line unless ``path`` is a checkpoint that can be read (cheaply: its
    tensors are mapped, not read)."""
    try:
        read_checkpoint(path, mmap=True)
    except CheckpointError as err:
        fail(str(err))


def one_line_errors(main: Callable) -> Callable:
    """Decorate a tool's ``main``: a ``CheckpointError`` from anywhere below it prints as
    one line and exits with status 1."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except CheckpointError as err:
            fail(str(err))

    return wrapper


if __name__ == '__main__':
    if not 2 <= len(sys.argv) <= 3:
        fail('usage: python -m dat.cli CONFIG [CHECKPOINT]')
    load_config(sys.argv[1])
    if len(sys.argv) == 3:
        check_checkpoint(sys.argv[2])
