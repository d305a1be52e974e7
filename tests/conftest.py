import importlib.util
import json
import os
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / 'shared' / 'reference'


@pytest.fixture(scope='session')
def reference_dir() -> Path:
    """../shared/reference beside the checkout (the golden 2022 data)."""
    if not REFERENCE.is_dir():
        pytest.skip(f'reference data not found at {REFERENCE}')
    return REFERENCE


@pytest.fixture(scope='session')
def repo_root() -> Path:
    return REPO


def import_tool(relpath: str):
    """Import a script under tools/ as a module, e.g. ``import_tool('train.py')``."""
    path = REPO / 'tools' / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def load_tool():
    """The :func:`import_tool` function, for tests that load the tools' scripts."""
    return import_tool


@pytest.fixture(scope='session')
def datpp_backbone_layouts():
    """{layout: {key: shape}}: the backbones of the authors' DAT++ detection and segmentation
    checkpoints (tests/data/datpp_det_seg_backbone_keys.tsv), keys without ``backbone.``."""
    layouts, current = defaultdict(dict), None
    for line in (REPO / 'tests/data/datpp_det_seg_backbone_keys.tsv').read_text().splitlines():
        if line.startswith('## '):
            current = line[3:].split(':')[0]
        elif not line.startswith('#'):
            key, shape, _ = line.split('\t')
            layouts[current][key] = tuple(json.loads(shape.replace('(', '[').replace(
                ',)', ']').replace(')', ']')))
    return dict(layouts)


def pytest_configure(config):
    # Keep run outputs of tools out of the checkout's work_dirs when tests run in parallel.
    os.environ.setdefault('PYTHONHASHSEED', '0')
