import importlib.util
import json
import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The golden data made with the authors' code (tests/data/reference/README.md says how).
REFERENCE = REPO / 'tests' / 'data' / 'reference'
REFERENCE_FILES = ('dat2022_checkpoint_keys.tsv', 'datpp_checkpoint_keys.tsv',
                   'golden_mini_config.json', 'golden_mini_dat2022.pth', 'golden_mini_io.pth',
                   'golden_mini_datpp_config.json', 'golden_mini_datpp.pth',
                   'golden_mini_datpp_io.pth')


@pytest.fixture(scope='session')
def reference_dir() -> Path:
    """tests/data/reference: the golden data of the authors' 2022 and DAT++ code. They are part
    of the repository, so a missing file is a failure, not a skip."""
    missing = [name for name in REFERENCE_FILES if not (REFERENCE / name).is_file()]
    if missing:
        pytest.fail(f'golden reference data missing from {REFERENCE}: {", ".join(missing)} '
                    '(they are committed with the tests; see tests/data/reference/README.md)',
                    pytrace=False)
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


def read_key_lists(path: Path) -> dict:
    """{name: (parameters, {key: shape})} from a key list: sections headed by
    ``# name: ... N parameters ...`` (or ``## ...``), then ``key<TAB>shape<TAB>dtype`` lines."""
    lists, current = {}, None
    for line in path.read_text().splitlines():
        if line.startswith('#'):
            header = re.match(r'#+ (\w+): .*?(\d+) parameters', line)
            if header:
                current = header.group(1)
                lists[current] = (int(header.group(2)), {})
            continue
        key, shape, _ = line.split('\t')
        lists[current][1][key] = tuple(json.loads(shape.replace('(', '[').replace(
            ',)', ']').replace(')', ']')))
    return lists


@pytest.fixture(scope='session')
def key_lists():
    """The :func:`read_key_lists` function."""
    return read_key_lists


@pytest.fixture(scope='session')
def datpp_backbone_layouts():
    """{layout: {key: shape}}: the backbones of the authors' DAT++ detection and segmentation
    checkpoints (tests/data/datpp_det_seg_backbone_keys.tsv), keys without ``backbone.``."""
    lists = read_key_lists(REPO / 'tests/data/datpp_det_seg_backbone_keys.tsv')
    return {name: keys for name, (_, keys) in lists.items()}


def pytest_configure(config):
    # Keep run outputs of tools out of the checkout's work_dirs when tests run in parallel.
    os.environ.setdefault('PYTHONHASHSEED', '0')
