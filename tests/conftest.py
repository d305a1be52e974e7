import importlib.util
import json
import os
import re
import sys
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


@pytest.fixture
def fresh_dynamo():
    """torch.compile's caches emptied before and after the test (tests that compile)."""
    import torch
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


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


#: mmengine's process-wide instances, by module: a Runner registers its logger, message hub
#: and visualizer, ``init_default_scope`` a DefaultScope (the last one is the current scope).
MANAGED = (('mmengine.registry.default_scope', 'DefaultScope'),
           ('mmengine.logging.logger', 'MMLogger'),
           ('mmengine.logging.message_hub', 'MessageHub'),
           ('mmengine.visualization.visualizer', 'Visualizer'))


def _managed_classes():
    return [getattr(sys.modules[module], name) for module, name in MANAGED
            if module in sys.modules]


class GlobalState:
    """What a test may change in the process and must leave as it found it: the
    environment variables, mmengine's default scope and its other process-wide instances
    (:data:`MANAGED`), and :mod:`dat.mmengine_patches`."""

    def __init__(self):
        self.env = dict(os.environ)
        self.instances = {cls: dict(cls._instance_dict) for cls in _managed_classes()}
        patches = sys.modules.get('dat.mmengine_patches')
        self.patched = patches is not None and patches.applied()

    def restore(self):
        for key in set(os.environ) - set(self.env):
            del os.environ[key]
        for key, value in self.env.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
        for cls in _managed_classes():  # the same instances in the same order
            saved = self.instances.get(cls, {})
            for name in set(cls._instance_dict) - set(saved):
                for handler in getattr(cls._instance_dict[name], 'handlers', []):
                    handler.close()  # an MMLogger's log file
            cls._instance_dict.clear()
            cls._instance_dict.update(saved)
        patches = sys.modules.get('dat.mmengine_patches')
        if patches is not None and patches.applied() != self.patched:
            patches.apply() if self.patched else patches.restore()


@pytest.fixture(autouse=True, scope='module')
def no_leaks_from_module_fixtures():
    """What module-scoped fixtures change is undone when their module ends."""
    state = GlobalState()
    yield
    state.restore()


@pytest.fixture(autouse=True)
def no_leaks():
    """What a test changes (see :class:`GlobalState`) is undone after it, so that tests
    pass in any order and any subset."""
    state = GlobalState()
    yield
    state.restore()


@pytest.fixture
def mmengine_patched():
    """:func:`dat.mmengine_patches.apply` for one test (as our tools apply it); undone
    after it."""
    from dat import mmengine_patches
    mmengine_patches.apply()
    yield
    # (no_leaks restores the state from before the test)


#: In-process tests that take long (> ~20 s on 2 busy cores, measured with --durations=0),
#: marked ``slow`` here by node id: a parametrised test keeps one case in the fast tier
#: (the one named in the comment), its other cases are slow.
SLOW_CASES = (
    'tests/test_segmentation/test_seg_configs.py::test_build_params_and_inference[',  # fpn tiny
    'tests/test_detection/test_det_configs.py::test_predict_at_800x1216_and_odd_size[',  # all
    'tests/test_classification/test_datpp_configs.py::test_build_count_and_train_step[',  # T++
    'tests/test_classification/test_in1k_configs.py::test_build_and_train_step[',  # DAT-T
    'tests/test_tools/test_benchmark.py::test_cpu_defaults_and_each_line_printed_when_measured',
    'tests/test_segmentation/test_learning.py::test_loss_falls_on_two_classes',
    'tests/test_models/test_backbones/test_dat.py::'
    'test_forward_backward_reaches_offsets_and_tables[base-kwargs6-size6]',
    'tests/test_models/test_fast_path.py::test_no_graph_breaks_under_compile',
    'tests/test_segmentation/test_datpp_seg.py::test_predict_at_odd_size[',  # fpn T++
    'tests/test_tools/test_get_flops.py::test_flops_and_params_match_the_paper[',  # DAT-T
    'tests/test_tools/test_upstream_tools.py::test_every_config_takes_the_fp32_override',
    'tests/test_models/test_backbones/test_dat.py::'
    'test_forward_backward_reaches_offsets_and_tables[tiny-kwargs4-',
    'tests/test_models/test_backbones/test_dat.py::'
    'test_forward_backward_reaches_offsets_and_tables[tiny-kwargs5-',
    'tests/test_models/test_backbones/test_dat.py::test_tiny_takes_other_sizes',
)
FAST_CASES = ('fpn_dat-tiny_8xb2',
              '[datpp-tiny_8xb128-amp_in1k]', '[dat-tiny_8xb128-amp_in1k]',
              'fpn_datpp-tiny_8xb4', '[dat-tiny_8xb128-amp_in1k.py]')


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith(SLOW_CASES) and not any(
                case in item.nodeid for case in FAST_CASES):
            item.add_marker(pytest.mark.slow)


def pytest_configure(config):
    # Keep run outputs of tools out of the checkout's work_dirs when tests run in parallel.
    os.environ.setdefault('PYTHONHASHSEED', '0')
