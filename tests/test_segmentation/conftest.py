"""Fixtures of the segmentation tests (helpers in seg_utils.py)."""
from pathlib import Path

import pytest

from seg_utils import make_ade_layout, write_mini_config


@pytest.fixture
def ade_root(tmp_path) -> Path:
    return make_ade_layout(tmp_path / 'ade')


@pytest.fixture
def mini_config(tmp_path, repo_root, ade_root) -> Path:
    return write_mini_config(tmp_path / 'upernet_mini.py', repo_root, ade_root)


@pytest.fixture(autouse=True)
def mmseg_scope():
    """Build from mmseg's registries whatever default scope earlier tests left behind."""
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield
