"""`dat::` config paths and `mim train/test/search dat`.

The installed case is a wheel of this checkout, installed in a temporary virtual environment
that sees the rest of the stack (``--system-site-packages``); every command runs outside the
repository. The editable case (tools/install.sh) is the running interpreter's ``dat``.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mmengine.config import Config

import dat
from dat.models.checkpoint import read_checkpoint

REPO = Path(__file__).resolve().parents[2]

CHILD_CONFIG = """
_base_ = ['dat::dat/dat-tiny_8xb128-amp_in1k.py']
model = dict(head=dict(num_classes=10))
"""

BUILD = """
import sys

import dat
import dat.mmengine_patches
from mmengine.config import Config
from mmengine.runner import Runner

from dat.runner_utils import setup_cpu_run

dat.mmengine_patches.apply()  # mmengine resolves `dat::` (as our tools do before a config)
cfg = Config.fromfile(sys.argv[1])
cfg.work_dir = 'work_dir'
setup_cpu_run(cfg)  # as tools/train.py does: AMP is for CUDA only
runner = Runner.from_cfg(cfg)  # builds the model and the hooks
model = runner.model
optim_wrapper = runner.build_optim_wrapper(cfg.optim_wrapper)
print('dat from', dat.__file__)
print('built', type(model).__name__, type(model.backbone).__name__, cfg.model.backbone.arch,
      model.head.fc.out_features, sum(p.numel() for p in model.parameters()),
      type(optim_wrapper).__name__, len(runner.hooks))
"""


def run(cmd, cwd, env=None):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, \
        f'{cmd} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}'
    return result


def source_copy(dst: Path) -> Path:
    """The checkout's files (tracked and untracked, not ignored), so that building a wheel
    leaves the checkout as it is."""
    listed = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=REPO,
                            capture_output=True)
    if listed.returncode != 0:
        shutil.copytree(REPO, dst, ignore=shutil.ignore_patterns(
            '.git', '.mim', 'work_dirs', 'data', 'build', '*.egg-info', '__pycache__'))
        return dst
    for name in filter(None, listed.stdout.decode().split('\0')):
        if (REPO / name).is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dst / name)
    return dst


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """A virtual environment with a wheel of this checkout installed, and how to run in it."""
    root = tmp_path_factory.mktemp('mim')
    src = source_copy(root / 'src')
    run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
         '-w', str(root / 'wheels'), str(src)], cwd=root)
    wheel = next((root / 'wheels').glob('dat-*.whl'))
    venv = root / 'venv'
    run([sys.executable, '-m', 'venv', '--system-site-packages', '--without-pip', str(venv)],
        cwd=root)
    python = str(venv / 'bin' / 'python')
    run([python, '-m', 'pip', 'install', '--no-deps', '-q', str(wheel)], cwd=root)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}", VIRTUAL_ENV=str(venv),
               OMP_NUM_THREADS='1')
    site = run([python, '-c', 'import dat, os; print(os.path.dirname(dat.__file__))'],
               cwd=root, env=env).stdout.strip()
    assert site.startswith(str(venv)), f'dat was imported from {site}, not from the wheel'
    return dict(root=root, python=python, env=env, package=Path(site),
                mim=[python, '-m', 'mim'])


@pytest.mark.slow
def test_wheel_carries_configs_tools_and_model_index(installed):
    mim = installed['package'] / '.mim'
    assert (mim / 'configs' / 'dat' / 'dat-tiny_8xb128-amp_in1k.py').is_file()
    assert (mim / 'configs' / '_base_' / 'default_runtime.py').is_file()
    assert (mim / 'tools' / 'train.py').is_file() and (mim / 'tools' / 'test.py').is_file()
    assert (mim / 'model-index.yml').read_text() == (REPO / 'model-index.yml').read_text()
    assert not any(p.is_symlink() for p in mim.rglob('*')), 'a wheel must hold copies'


@pytest.mark.slow
def test_config_outside_the_repo_inherits_dat_config(installed, tmp_path):
    (tmp_path / 'my_dat.py').write_text(CHILD_CONFIG)
    (tmp_path / 'build.py').write_text(BUILD)
    out = run([installed['python'], 'build.py', 'my_dat.py'], cwd=tmp_path,
              env=installed['env']).stdout
    assert f"dat from {installed['package']}" in out
    # DAT-T has 28,319,138 parameters with its 1000-class head (768 x 1000 + 1000)
    assert 'built ImageClassifier DAT tiny 10 ' \
        f'{28_319_138 - 768 * 990 - 990} OptimWrapper' in out, out


@pytest.mark.slow
def test_mim_search_lists_the_models(installed):
    """`mim search dat` reads the installed model index: every model of every metafile."""
    out = run(installed['mim'] + ['search', 'dat'], cwd=installed['root'],
              env=installed['env']).stdout
    expected = {model['Name'] for metafile in sorted(REPO.glob('configs/*/metafile.yml'))
                for model in yaml.safe_load(metafile.read_text())['Models']}
    assert {'dat-tiny_8xb128-amp_in1k', 'mask-rcnn_dat-tiny_fpn_amp-1x_coco'} <= expected
    assert set(re.findall(r'^config id: (\S+)$', out, re.M)) == expected, out[-3000:]


@pytest.mark.slow
def test_mim_train_and_test_the_mini_config(installed, tmp_path):
    """`mim train dat CONFIG_NAME` finds the mini config in the installed package and trains
    it briefly on generated data in ./data/shapes; `mim test dat` evaluates the result."""
    run([sys.executable, str(REPO / 'tools/dataset_converters/make_shapes_dataset.py'),
         'data/shapes', '--train', '2', '--val', '1', '--size', '32'], cwd=tmp_path)
    shrink = ['--cfg-options', 'train_cfg.max_epochs=1', 'train_dataloader.batch_size=4',
              'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
              'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
              'default_hooks.logger.interval=1']
    result = run(installed['mim'] + ['train', 'dat', 'dat-mini_1xb32_shapes.py',
                                     '--work-dir', 'work_dir', *shrink],
                 cwd=tmp_path, env=installed['env'])
    config = installed['package'] / '.mim' / 'configs' / 'dat' / 'dat-mini_1xb32_shapes.py'
    assert f'will use {config} instead' in result.stdout
    # 12 images, batch 4: 3 iterations
    assert 'Epoch(train) [1][3/3]' in result.stdout + result.stderr
    checkpoint = tmp_path / 'work_dir' / 'epoch_1.pth'
    assert read_checkpoint(checkpoint)['meta']['iter'] == 3

    result = run(installed['mim'] + ['test', 'dat', 'dat-mini_1xb32_shapes.py', '--checkpoint',
                                     str(checkpoint), '--work-dir', 'test', *shrink],
                 cwd=tmp_path, env=installed['env'])
    top1, top5 = map(float, re.search(r'accuracy/top1: ([0-9.]+) accuracy/top5: ([0-9.]+)',
                                      result.stdout).groups())
    assert 0 <= top1 <= top5 <= 100


def test_editable_install_serves_dat_configs(tmp_path, mmengine_patched):
    """This interpreter's dat (editable install or checkout): `dat::` resolves to its own
    dat/.mim, which links the checkout's configs (once dat.mmengine_patches is applied)."""
    mim = Path(dat.__file__).parent / '.mim'
    assert (mim / 'configs').is_dir(), \
        f'{mim} is missing: an install makes it (bash tools/install.sh, or pip install -e .)'
    (tmp_path / 'my_dat.py').write_text(CHILD_CONFIG)
    cfg = Config.fromfile(tmp_path / 'my_dat.py')
    assert cfg.model.backbone.arch == 'tiny' and cfg.model.head.num_classes == 10
    base = Config.fromfile(REPO / 'configs' / 'dat' / 'dat-tiny_8xb128-amp_in1k.py')
    # read as if inherited by its path: the same settings, in the config's own scope
    # (mmengine would mark them _scope_='dat', a scope without registries)
    assert cfg.default_scope == 'mmpretrain'
    for key in ('optim_wrapper', 'param_scheduler', 'train_dataloader', 'default_hooks'):
        assert cfg[key] == base[key], key
    assert dict(cfg.model, head=None) == dict(base.model, head=None)


@pytest.mark.slow
def test_model_hub_and_timm_from_the_wheel(installed, tmp_path):
    """The installed package serves the model names (its own dat/.mim) and the timm names;
    pretrained=True names the release file instead of giving random weights."""
    script = tmp_path / 'hub.py'
    script.write_text("""
import dat, timm
import dat.adapters.mmpretrain, mmpretrain
print('hub', len(mmpretrain.list_models('dat*')), mmpretrain.get_model('datpp-tiny_8xb128-amp_in1k',
      device='meta')._config.filename)
print('timm', timm.list_models('dat*'))
try:
    mmpretrain.get_model('dat-tiny_8xb128-amp_in1k', pretrained=True)
except FileNotFoundError as err:
    print('refused:', err)
""")
    out = run([installed['python'], str(script)], cwd=tmp_path, env=installed['env']).stdout
    config = installed['package'] / '.mim' / 'configs' / 'datpp' / 'datpp-tiny_8xb128-amp_in1k.py'
    assert f'hub 8 {config}' in out, out
    assert "timm ['dat_base', 'dat_base_384', 'dat_small', 'dat_tiny', 'datpp_base'" in out
    assert 'refused: pretrained=True (dat-release://dat_tiny_in1k_224.pth)' in out
    assert 'python tools/model_converters/dat2mmpretrain.py dat_tiny_in1k_224.pth' in out


@pytest.mark.slow
def test_mim_download_dumps_the_config(installed, tmp_path):
    """`mim download dat --config NAME --dest DIR` reads the installed index; it cannot fetch
    the release file (we host none: `dat-release://` is not a download URL), so with the
    file already in DIR it only writes the resolved config there."""
    dest = tmp_path / 'dest'
    dest.mkdir()
    (dest / 'dat_tiny_in1k_224.pth').write_bytes(b'release file, downloaded by hand')
    out = run(installed['mim'] + ['download', 'dat', '--config', 'dat-tiny_8xb128-amp_in1k',
                                  '--dest', str(dest)], cwd=tmp_path, env=installed['env']).stdout
    assert 'dat_tiny_in1k_224.pth exists in' in out, out
    dumped = Config.fromfile(dest / 'dat-tiny_8xb128-amp_in1k.py')
    assert dumped.model.backbone.arch == 'tiny'
    assert dumped.optim_wrapper.type == 'AmpOptimWrapper'
