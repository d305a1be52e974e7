"""The DAT++ segmentation configs: the settings of the authors' configs
(LeapLabTHU/DAT-Segmentation), released checkpoints converting to them strictly, prediction at
an odd size, and training and testing with the tools on 2 CPU processes."""
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from dat.converters.datpp import convert_datpp_downstream, rename_key

from seg_utils import MINI_PP_BACKBONE, make_ade_layout, write_mini_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(str(p.relative_to(REPO)) for folder in ('upernet', 'sem_fpn')
                 for p in (REPO / 'configs' / folder).glob('*_datpp-*.py'))
DIMS = {'tiny': [64, 128, 256, 512], 'small': [96, 192, 384, 768],
        'base': [128, 256, 512, 1024]}
# name: (authors' config, drop path, mixed precision)
RELEASE = {
    'upernet_datpp-tiny_8xb2-amp-160k_ade20k-512x512': ('upn_tiny_160k_dp03_lr6', 0.3, True),
    'upernet_datpp-small_8xb2-amp-160k_ade20k-512x512': ('upn_small_160k_dp05_lr6', 0.5, True),
    'upernet_datpp-base_8xb2-160k_ade20k-512x512': ('upn_base_160k_dp07_lr6', 0.7, False),
    'fpn_datpp-tiny_8xb4-40k_ade20k-512x512': ('fpn_tiny_80k_dp04_lr2', 0.4, False),
    'fpn_datpp-small_8xb4-40k_ade20k-512x512': ('fpn_small_80k_dp04_lr2', 0.4, False),
    'fpn_datpp-base_8xb4-40k_ade20k-512x512': ('fpn_base_80k_dp07_lr2', 0.7, False),
}


def arch_of(config):
    return Path(config).stem.split('_datpp-')[1].split('_')[0]


def build(config, device='cpu'):
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import dat.adapters.mmseg  # noqa: F401
    init_default_scope('mmseg')
    from mmengine.model import revert_sync_batchnorm
    cfg = Config.fromfile(REPO / config)
    cfg.model.backbone.init_cfg = None
    with torch.device(device):
        return cfg, revert_sync_batchnorm(MODELS.build(cfg.model))  # SyncBN needs CUDA


def test_every_released_segmentor_has_a_config():
    assert {Path(c).stem for c in CONFIGS} == set(RELEASE)


@pytest.mark.parametrize('config', CONFIGS)
def test_config_follows_the_release(config):
    cfg = Config.fromfile(REPO / config)
    _, drop_path, amp = RELEASE[Path(config).stem]
    arch = arch_of(config)
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.arch, backbone.img_size) == ('DATPlusPlus', arch, 224)
    assert backbone.drop_path_rate == drop_path and backbone.out_indices == (0, 1, 2, 3)
    assert backbone.init_cfg.checkpoint == f'checkpoints/datpp-{arch}_in1k_224.pth'
    assert cfg.model.decode_head.num_classes == 150
    # use_checkpoint: True in the release's upernet_dat.py, False in its fpn_dat.py
    assert backbone.with_cp is ('upernet' in config)
    optim = cfg.optim_wrapper
    assert optim.type == ('AmpOptimWrapper' if amp else 'OptimWrapper')
    assert optim.paramwise_cfg.custom_keys['norm'] == dict(decay_mult=0.)
    assert 'norm_decay_mult' not in optim.paramwise_cfg  # the heads' BN is decayed
    if 'upernet' in config:
        assert cfg.model.decode_head.in_channels == DIMS[arch]
        assert cfg.model.auxiliary_head.in_channels == DIMS[arch][2]
        assert optim.optimizer == dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999),
                                       weight_decay=0.01)
        warmup, poly = cfg.param_scheduler
        # overlapping from iteration 0: the release's poly decay with the warm-up on top
        assert (warmup.type, warmup.begin, warmup.end, warmup.start_factor) == \
            ('LinearLR', 0, 1501, 1e-6)
        assert (poly.type, poly.begin, poly.end, poly.power, poly.eta_min) == \
            ('PolyLR', 0, 160001, 1.0, 0.)
        assert (cfg.train_dataloader.batch_size, cfg.train_cfg.max_iters) == (2, 160000)
    else:
        assert cfg.model.neck.in_channels == DIMS[arch]
        assert cfg.model.get('auxiliary_head') is None
        assert optim.optimizer == dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999),
                                       weight_decay=1e-4)
        (poly, ) = cfg.param_scheduler
        assert (poly.type, poly.power, poly.eta_min, poly.end) == ('PolyLR', 0.9, 0., 40000)
        assert (cfg.train_dataloader.batch_size, cfg.train_cfg.max_iters) == (4, 40000)


def test_upernet_lr_is_the_release_poly_with_warmup():
    """mmengine's LinearLR and PolyLR, overlapping from iteration 0, give the lr of the
    release's mmcv 1.x 'poly' policy with a linear warm-up: poly from iteration 0, times
    1 - (1 - i / 1500) * (1 - 1e-6) during the warm-up."""
    from mmengine.optim import OptimWrapper
    from mmengine.registry import PARAM_SCHEDULERS

    cfg = Config.fromfile(
        REPO / 'configs/upernet/upernet_datpp-tiny_8xb2-amp-160k_ade20k-512x512.py')
    base, total = 6e-5, 160000
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    wrapper = OptimWrapper(optimizer)
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=wrapper))
                  for s in cfg.param_scheduler]
    checked = {0, 1, 749, 1499, 1500, 1501, 3000}
    for i in range(max(checked) + 1):
        if i in checked:
            poly = base * (1 - i / total)
            warmup = 1 - (1 - i / 1500) * (1 - 1e-6) if i < 1500 else 1.0
            assert optimizer.param_groups[0]['lr'] == pytest.approx(poly * warmup, rel=1e-9), i
        for scheduler in schedulers:
            scheduler.step()


def test_weight_decay_as_the_release():
    cfg, model = build('configs/upernet/upernet_datpp-tiny_8xb2-amp-160k_ade20k-512x512.py',
                       device='meta')
    optim_cfg = dict(cfg.optim_wrapper, type='OptimWrapper')
    optimizer = build_optim_wrapper(model, optim_cfg).optimizer
    decay = {id(p): g['weight_decay'] for g in optimizer.param_groups for p in g['params']}
    named = dict(model.named_parameters())
    assert decay[id(named['backbone.stages.0.blocks.1.attn.rpe_table'])] == 0
    assert decay[id(named['backbone.stages.0.blocks.0.norm1.weight'])] == 0
    assert decay[id(named['backbone.norm2.bias'])] == 0
    assert decay[id(named['backbone.stages.0.blocks.0.attn.rpb'])] == 0.01
    assert decay[id(named['decode_head.bottleneck.bn.weight'])] == 0.01
    assert decay[id(named['decode_head.conv_seg.bias'])] == 0.01


@pytest.mark.parametrize('config', [c for c in CONFIGS if 'tiny' in c or 'base' in c])
def test_released_checkpoint_converts_and_loads_strictly(config, datpp_backbone_layouts):
    _, model = build(config, device='meta')
    layout = datpp_backbone_layouts[f'det_seg_{arch_of(config)}']
    state = {f'backbone.{k}': torch.randn(shape) for k, shape in layout.items()}
    state.update((k, torch.randn(v.shape) if v.is_floating_point()
                  else torch.zeros(v.shape, dtype=v.dtype))
                 for k, v in model.state_dict().items() if not k.startswith('backbone.'))
    palette = [[120, 120, 120]] * 150
    converted, info = convert_datpp_downstream(
        dict(state_dict=state, meta=dict(CLASSES=('wall', ) * 150, PALETTE=palette)))
    assert info['dataset_meta']['palette'] == palette
    used = defaultdict(list)
    for key in layout:
        used[rename_key(key)[0]].append(key)
    assert all(len(keys) == 1 for keys in used.values())
    model.load_state_dict(converted, strict=True, assign=True)
    assert torch.equal(model.backbone.norm3.weight, state['backbone.norms.3.norm.weight'])


@pytest.mark.parametrize('config', CONFIGS)
def test_predict_at_odd_size(config):
    from mmseg.structures import SegDataSample
    _, model = build(config)
    model.eval()
    image = torch.randint(0, 256, (3, 237, 301), dtype=torch.uint8)
    sample = SegDataSample(metainfo=dict(img_shape=(237, 301), ori_shape=(237, 301)))
    with torch.no_grad():
        result = model.test_step(dict(inputs=[image], data_samples=[sample]))[0]
    assert tuple(result.seg_logits.data.shape) == (150, 237, 301)
    assert torch.isfinite(result.seg_logits.data).all()
    assert tuple(result.pred_sem_seg.data.shape) == (1, 237, 301)


@pytest.mark.slow
@pytest.mark.heavy
def test_dist_train_then_test(tmp_path):
    """A scaled-down DAT++ UperNet from the T++ recipe: tools/dist_train.sh with 2 CPU
    processes, then tools/test.py reports mIoU."""
    data_root = make_ade_layout(tmp_path / 'ade')
    config = write_mini_config(tmp_path / 'upernet_datpp_mini.py', REPO, data_root, 4,
                               recipe='upernet_datpp-tiny_8xb2-amp-160k_ade20k-512x512.py',
                               backbone=MINI_PP_BACKBONE)
    env = dict(os.environ, PORT=str(29500 + (os.getpid() + 7) % 1000))
    result = subprocess.run(['bash', 'tools/dist_train.sh', str(config), '2', '--work-dir',
                             str(tmp_path / 'work')], cwd=REPO, capture_output=True,
                            text=True, timeout=600, env=env)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    losses = re.findall(r'Iter\(train\) \[\s*(\d+)/\d+\].*? loss: ([\d.]+)', log)
    assert [int(i) for i, _ in losses] == [1, 2, 3, 4]
    assert all(np.isfinite(float(v)) for _, v in losses)
    assert Config.fromfile(config).model.backbone.type == 'DATPlusPlus'

    result = subprocess.run([sys.executable, 'tools/test.py', str(config),
                             str(tmp_path / 'work' / 'iter_4.pth'), '--work-dir',
                             str(tmp_path / 'test')], cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    metrics = dict(re.findall(r'(\w+): ([\d.]+)', result.stdout.strip().splitlines()[-1]))
    assert 0 <= float(metrics['mIoU']) <= 100
