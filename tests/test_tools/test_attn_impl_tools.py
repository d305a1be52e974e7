"""The attention implementation is chosen in the config (``model.backbone.attn_impl``),
reaches every attention layer, is logged, and the tools take ``--amp bf16``."""
import os
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from dat.adapters.builder import build_model_from_config
from dat.models.layers import DeformableAttention, WindowAttention

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHOICES = "choose one of 'auto', 'reference', 'sdpa'"

# The quick-start config, with the smallest data and one epoch of 2 iterations.
MINI_CONFIG = """
_base_ = ['{repo}/configs/dat/dat-mini_1xb32_shapes.py']
train_dataloader = dict(batch_size=12, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root='{data}'))
val_dataloader = dict(batch_size=12, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root='{data}'))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=1, val_interval=1)
default_hooks = dict(logger=dict(interval=1))
"""


def run(args, check=True):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable] + args, cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=600)
    if check:
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result


@pytest.fixture(scope='module')
def mini(tmp_path_factory):
    root = tmp_path_factory.mktemp('attn_impl')
    run(['tools/dataset_converters/make_shapes_dataset.py', str(root / 'data'), '--train', '4',
         '--val', '2', '--size', '32'])
    config = root / 'mini.py'
    config.write_text(MINI_CONFIG.format(repo=REPO, data=root / 'data'))
    return root, config


def attention_layers(model):
    return [m for m in model.modules() if isinstance(m, (WindowAttention,
                                                         DeformableAttention))]


@pytest.mark.parametrize('config', [
    'configs/dat/dat-tiny_8xb128-amp_in1k.py',
    'configs/mask_rcnn/mask-rcnn_dat-tiny_fpn_amp-1x_coco.py',
    'configs/upernet/upernet_dat-tiny_8xb2-amp-160k_ade20k-512x512.py'])
def test_config_attn_impl_reaches_every_layer(config):
    cfg = Config.fromfile(os.path.join(REPO, config))
    assert cfg.model.backbone.attn_impl == 'auto'  # recorded in the config
    cfg.merge_from_dict({'model.backbone.attn_impl': 'sdpa'})
    model = build_model_from_config(cfg)
    layers = attention_layers(model.backbone)
    assert len(layers) == 12  # DAT-T: depths 2, 2, 6, 2
    assert {layer.attn_impl for layer in layers} == {'sdpa'}


@pytest.mark.slow
def test_train_with_attn_impl_from_cfg_options_then_test_with_bf16(mini):
    root, config = mini
    work_dir = root / 'work'
    result = run(['tools/train.py', str(config), '--work-dir', str(work_dir),
                  '--cfg-options', 'model.backbone.attn_impl=reference'])
    logs = list(work_dir.glob('*/*.log'))
    assert len(logs) == 1
    log = logs[0].read_text()
    assert "DAT attention: attn_impl='reference' runs 'reference' on cpu" in log
    assert 'Epoch(train) [1][2/2]' in log, result.stdout[-2000:]
    dumped = Config.fromfile(work_dir / 'mini.py')
    assert dumped.model.backbone.attn_impl == 'reference'

    result = run(['tools/test.py', str(config), str(work_dir / 'epoch_1.pth'), '--work-dir',
                  str(root / 'test'), '--amp', 'bf16', '--cfg-options',
                  'model.backbone.attn_impl=sdpa'])
    assert result.stdout.strip().splitlines()[-1].startswith('accuracy/top1: ')
    log = next((root / 'test').glob('*/*.log')).read_text()
    assert "DAT attention: attn_impl='sdpa' runs 'sdpa' on cpu" in log


@pytest.mark.slow
def test_unknown_attn_impl_names_the_choices(mini):
    root, config = mini
    result = run(['tools/train.py', str(config), '--work-dir', str(root / 'bad'),
                  '--cfg-options', 'model.backbone.attn_impl=fast'], check=False)
    assert result.returncode != 0
    assert f"Unknown attention implementation attn_impl='fast'; {CHOICES}" in result.stderr


@pytest.mark.parametrize('amp,expected', [
    ([], ('OptimWrapper', None)),
    (['--amp'], ('AmpOptimWrapper', None)),
    (['--amp', 'fp16'], ('AmpOptimWrapper', None)),
    (['--amp', 'bf16'], ('AmpOptimWrapper', 'bfloat16'))])
def test_train_amp_choices(load_tool, monkeypatch, amp, expected):
    train = load_tool('train.py')
    monkeypatch.setattr(sys, 'argv', ['train.py', 'x.py'] + amp)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)  # keep the AMP wrapper
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD'))))
    cfg = train.merge_args(cfg, train.parse_args())
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.get('dtype')) == expected
    with pytest.raises(SystemExit):
        monkeypatch.setattr(sys, 'argv', ['train.py', 'x.py', '--amp', 'fp8'])
        train.parse_args()
