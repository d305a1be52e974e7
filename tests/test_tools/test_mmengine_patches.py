"""dat.mmengine_patches, and the pins of every mmengine (and mmpretrain) internal that dat
touches (docs/internals.md lists them).

A pin compares what we replace, wrap or override with the version we checked (mmengine
0.10.7, mmpretrain 1.2.0); after an upgrade it fails and its message says what to check
and what to update.
"""
import hashlib
import inspect
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import CheckpointHook
from mmengine.optim import OptimWrapper
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

from dat import mmengine_patches
from dat.models.checkpoint import CheckpointError, load_from_local

REPO_ROOT = Path(__file__).resolve().parents[2]


def sha256_of_source(function) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()


def upgrade_message(what: str, check: str, pin: str) -> str:
    return (f'mmengine {__import__("mmengine").__version__} changed {what}, which dat relies '
            f'on (checked with {mmengine_patches.CHECKED_MMENGINE}): {check}; then update '
            f'{pin} in {__file__} and docs/internals.md')


# Importing dat patches nothing ------------------------------------------------------------

IMPORTS = ['dat', 'dat.models', 'dat.engine', 'dat.cli', 'dat.converters', 'dat.scope']


def test_importing_dat_patches_nothing():
    import importlib
    for name in IMPORTS:
        importlib.import_module(name)
    assert mmengine_patches.is_mmengine_default()
    assert not mmengine_patches.applied()


@pytest.mark.slow
def test_importing_dat_patches_nothing_in_a_fresh_interpreter():
    """The same in a new process (nothing imported before), adapters included."""
    code = f"""
import importlib, importlib.util
for name in {IMPORTS!r} + ['dat.adapters.mmpretrain', 'dat.adapters.mmdet',
                           'dat.adapters.mmseg']:
    if name.startswith('dat.adapters') and importlib.util.find_spec(
            'mm' + name.split('.mm')[1]) is None:
        continue
    importlib.import_module(name)
from mmengine.config import Config
from mmengine.runner import checkpoint
assert Config.__dict__['_get_cfg_path'].__func__.__module__ == 'mmengine.config.config'
assert checkpoint.CheckpointLoader._schemes[''] is checkpoint.load_from_local
print('mmengine untouched')
"""
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            cwd=REPO_ROOT)
    assert result.returncode == 0 and 'mmengine untouched' in result.stdout, result.stderr


# apply() and restore() -------------------------------------------------------------------

def test_apply_is_idempotent_and_restore_undoes_it():
    original_resolver = Config.__dict__['_get_cfg_path']
    mmengine_patches.apply()
    patched_resolver = Config.__dict__['_get_cfg_path']
    mmengine_patches.apply()
    assert Config.__dict__['_get_cfg_path'] is patched_resolver  # not wrapped twice
    assert CheckpointLoader._schemes[''] is load_from_local
    assert mmengine_patches.applied() and not mmengine_patches.is_mmengine_default()
    mmengine_patches.restore()
    assert Config.__dict__['_get_cfg_path'] is original_resolver
    assert CheckpointLoader._schemes[''] is mmengine_checkpoint.load_from_local
    assert mmengine_patches.is_mmengine_default() and not mmengine_patches.applied()
    mmengine_patches.restore()  # a second restore does nothing
    assert mmengine_patches.is_mmengine_default()


CHILD = "_base_ = ['dat::dat/base.py']\nmodel = dict(head=dict(num_classes=7))\n"
BASE = ("default_scope = 'mmpretrain'\n"
        "model = dict(backbone=dict(arch='tiny'), head=dict(num_classes=1000))\n")


@pytest.fixture
def dat_config_dir(monkeypatch, tmp_path):
    """A folder of dat configs for ``dat::`` (an install links dat/.mim/configs to the
    checkout's configs; this test needs no install)."""
    configs = tmp_path / 'configs'
    (configs / 'dat').mkdir(parents=True)
    (configs / 'dat' / 'base.py').write_text(BASE)
    monkeypatch.setattr('dat.scope.CONFIG_DIR', str(configs))
    return configs


def test_dat_config_paths_only_when_applied(tmp_path, dat_config_dir):
    (tmp_path / 'child.py').write_text(CHILD)
    with pytest.raises(Exception) as error:  # mmengine's own: dat is no OpenMMLab package
        Config.fromfile(tmp_path / 'child.py')
    assert 'no such config' not in str(error.value)
    mmengine_patches.apply()
    cfg = Config.fromfile(tmp_path / 'child.py')
    assert cfg.model.backbone.arch == 'tiny' and cfg.model.head.num_classes == 7
    assert cfg.default_scope == 'mmpretrain'  # the base's own scope, not 'dat'
    assert '_scope_' not in cfg.model
    (tmp_path / 'bad.py').write_text("_base_ = ['dat::dat/no-such-config.py']\n")
    with pytest.raises(FileNotFoundError, match=r'dat::dat/no-such-config.py \(in .*bad.py\): '
                                                r'no such config in'):
        Config.fromfile(tmp_path / 'bad.py')
    mmengine_patches.restore()


def test_load_config_of_our_tools_applies_the_patches(tmp_path, dat_config_dir):
    from dat.cli import load_config
    (tmp_path / 'child.py').write_text(CHILD)
    assert load_config(str(tmp_path / 'child.py')).model.head.num_classes == 7
    assert mmengine_patches.applied()
    assert load_config('dat::dat/base.py').model.backbone.arch == 'tiny'
    with pytest.raises(SystemExit, match=r'error: dat::nothing.py: no such config'):
        load_config('dat::nothing.py')


def test_local_checkpoints_through_mmengine_when_applied(tmp_path):
    """Applied: mmengine's loaders read local files with ours (mmengine Runner records,
    one-line errors for a truncated file); restored: mmengine's own loader again."""
    from mmengine.logging import HistoryBuffer
    good = tmp_path / 'runner.pth'
    torch.save({'state_dict': {'w': torch.ones(2)},
                'message_hub': {'log_scalars': {'loss': HistoryBuffer([1.0, 2.0], [1, 1])}}}, good)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[:200])
    assert zipfile.is_zipfile(good) and not zipfile.is_zipfile(truncated)

    mmengine_patches.apply()
    loaded = CheckpointLoader.load_checkpoint(str(good), map_location='cpu')
    assert loaded['message_hub']['log_scalars']['loss'].mean() == 1.5
    with pytest.raises(CheckpointError, match=r'truncated.pth: cannot be read as a checkpoint: '
                                              r'it is truncated or damaged'):
        CheckpointLoader.load_checkpoint(str(truncated), map_location='cpu')

    mmengine_patches.restore()
    with pytest.raises(Exception) as error:
        CheckpointLoader.load_checkpoint(str(truncated), map_location='cpu')
    assert not isinstance(error.value, CheckpointError)


# Pins of what we replace or wrap ---------------------------------------------------------

#: sha256 of mmengine 0.10.7's Config._get_cfg_path source (wrapped by apply()).
GET_CFG_PATH_SHA256 = '6cae4181dcfe32de80894324c117db063a408383ab9f6f1976d1639f1e6aeb85'
#: sha256 of mmengine 0.10.7's runner.checkpoint.load_from_local source (replaced).
LOAD_FROM_LOCAL_SHA256 = 'aa24a2a99a65f3f6bfda9e682038e22fda6b6ebf0ef5b8fd751d9e7f8c741645'
#: sha256 of mmengine 0.10.7's CheckpointLoader._get_checkpoint_loader source.
GET_CHECKPOINT_LOADER_SHA256 = '54915b42c39d840ff160412a5c18d0b7026097a1cba2911c4c3ad5cb0e90e3a6'
#: sha256 of mmengine 0.10.7's CheckpointHook._save_checkpoint_with_step source.
SAVE_WITH_STEP_SHA256 = 'cdbc1b54c7c88d9525ab025a9d51a3d3be6e6e36396c0f1151ecf51281fd3482'


def test_pin_config_get_cfg_path():
    what = upgrade_message(
        'the private Config._get_cfg_path(cfg_path, filename) -> (path, scope), which '
        'dat.mmengine_patches wraps for dat:: base configs',
        'read the new function and its caller Config._file2dict; keep the wrapper\'s '
        'arguments and return value the same as mmengine\'s (or use a public hook if mmengine '
        'now has one for PACKAGE:: paths)', 'GET_CFG_PATH_SHA256')
    assert isinstance(Config.__dict__['_get_cfg_path'], staticmethod), what
    assert list(inspect.signature(Config._get_cfg_path).parameters) == [
        'cfg_path', 'filename'], what
    assert 'base_cfg_path, scope = Config._get_cfg_path(' in inspect.getsource(
        Config._file2dict), what
    digest = sha256_of_source(Config._get_cfg_path)
    assert digest == GET_CFG_PATH_SHA256, f'{what} (sha256 now {digest})'


def test_pin_checkpoint_loader_local_scheme():
    what = upgrade_message(
        'its loader of local checkpoint files (runner.checkpoint.load_from_local, prefix '
        "'' of CheckpointLoader), which dat.mmengine_patches replaces with "
        'dat.models.checkpoint.load_from_local',
        'read the new loader; if it now reads mmengine Runner checkpoints with '
        'weights_only=True and safe globals and gives a clear error for a damaged file, '
        'the replacement may go; else keep ours (same arguments: filename, map_location)',
        'LOAD_FROM_LOCAL_SHA256 / GET_CHECKPOINT_LOADER_SHA256')
    assert isinstance(CheckpointLoader._schemes, dict), what
    assert CheckpointLoader._schemes.get('') in (mmengine_checkpoint.load_from_local,
                                                 load_from_local), what
    assert list(inspect.signature(CheckpointLoader.register_scheme).parameters) == [
        'prefixes', 'loader', 'force'], what
    assert list(inspect.signature(mmengine_checkpoint.load_from_local).parameters) == list(
        inspect.signature(load_from_local).parameters) == ['filename', 'map_location'], what
    digest = sha256_of_source(mmengine_checkpoint.load_from_local)
    assert digest == LOAD_FROM_LOCAL_SHA256, f'{what} (sha256 now {digest})'
    digest = sha256_of_source(CheckpointLoader._get_checkpoint_loader)
    assert digest == GET_CHECKPOINT_LOADER_SHA256, f'{what} (sha256 now {digest})'


def test_pin_checkpoint_hook_save_with_step():
    what = upgrade_message(
        'the private CheckpointHook._save_checkpoint_with_step (every checkpoint save goes '
        'through it), which dat.engine.AtomicCheckpointHook overrides',
        'compare the new source with the override (steps, message hub keys, '
        'last_checkpoint, removals) and update the override', 'SAVE_WITH_STEP_SHA256')
    digest = sha256_of_source(CheckpointHook._save_checkpoint_with_step)
    assert digest == SAVE_WITH_STEP_SHA256, f'{what} (sha256 now {digest})'
    assert list(inspect.signature(CheckpointHook._save_checkpoint_with_step).parameters) == [
        'self', 'runner', 'step', 'meta'], what
    for caller in (CheckpointHook._save_checkpoint, CheckpointHook._save_best_checkpoint):
        assert 'self._save_checkpoint_with_step(runner, ' in inspect.getsource(caller), what


def test_pin_optim_wrapper_clips_with_clip_func_and_logs_its_float():
    what = upgrade_message(
        'OptimWrapper._clip_grad / step: dat.engine.NonFiniteCheckHook reads the gradient '
        'norm by replacing OptimWrapper.clip_func (its result is logged with float())',
        'check that the norm is still computed by clip_func right before optimizer.step',
        'this test')
    source = inspect.getsource(OptimWrapper._clip_grad)
    assert 'grad = self.clip_func(params, **self.clip_grad_kwargs)' in source, what
    assert 'float(grad)' in source, what
    assert 'self._clip_grad()\n        self.optimizer.step(**kwargs)' in inspect.getsource(
        OptimWrapper.step), what


def test_pin_mmpretrain_dataset_meta():
    """tools/demo/image_demo.py sets ``model._dataset_meta`` from a checkpoint's meta, as
    mmpretrain's get_model does, for the inferencer's class names."""
    pytest.importorskip('mmpretrain')
    from mmpretrain.apis import ImageClassificationInferencer
    from mmpretrain.apis.model import get_model
    what = ('mmpretrain changed where the class names of a model live (ImageClassifier.'
            '_dataset_meta, set by get_model, read by ImageClassificationInferencer), which '
            'tools/demo/image_demo.py sets: follow the new name there, then update this test '
            'and docs/internals.md')
    assert 'model._dataset_meta = dataset_meta' in inspect.getsource(get_model), what
    assert "'_dataset_meta'" in inspect.getsource(ImageClassificationInferencer.__init__), what


def test_package_paths_are_looked_up_once(monkeypatch):
    """A ``PACKAGE::`` base that several configs inherit is found by mmengine once; the
    configs are the same as without the patches."""
    import mmengine.config.config as mmengine_config
    lookups = []
    lookup = mmengine_config._get_external_cfg_path

    def counted(package_path, cfg_file):
        lookups.append(cfg_file)
        return lookup(package_path, cfg_file)

    def load_all():  # (custom_imports off: our configs' imports apply the patches)
        return [Config.fromfile(path, import_custom_modules=False).to_dict()
                for path in paths]

    monkeypatch.setattr(mmengine_config, '_get_external_cfg_path', counted)
    paths = [REPO_ROOT / 'configs' / 'retinanet' / name for name in (
        'retinanet_dat-tiny_fpn_amp-1x_coco.py', 'retinanet_dat-small_fpn_amp-1x_coco.py')]
    mmengine_patches.restore()  # mmengine's own resolver (no_leaks puts back the state)
    expected = load_all()
    assert len(lookups) == 8  # 4 mmdet:: bases per config
    lookups.clear()
    mmengine_patches.apply()
    try:
        assert load_all() == expected and load_all() == expected
    finally:
        mmengine_patches.restore()
    assert sorted(lookups) == sorted(set(lookups)) and len(lookups) == 4
