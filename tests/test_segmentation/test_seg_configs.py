"""Every segmentation config parses, carries the paper's recipe, builds with the paper's
parameter count and runs inference (whole and slide) on the CPU with random weights.

Every config, through its own test pipeline: a 512x512 image and a 375x500 one (ADE20K-like;
resized to 512x683), each in whole and slide mode (512x512 crops, stride 341: one window for
the square, so slide must equal whole; two overlapping ones for 512x683).
"""
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.optim import build_optim_wrapper

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(str(p.relative_to(REPO)) for folder in ('upernet', 'sem_fpn')
                 for p in (REPO / 'configs' / folder).glob('*_dat-*.py'))
ARCH = {'tiny': ([96, 192, 384, 768], 0.2), 'small': ([96, 192, 384, 768], 0.3),
        'base': ([128, 256, 512, 1024], 0.5)}
# Parameters (M) reported by the paper (Xia et al., CVPR 2022, ADE20K table).
PAPER_PARAMS = {('upernet', 'tiny'): 60, ('upernet', 'small'): 81, ('upernet', 'base'): 121,
                ('sem_fpn', 'tiny'): 32, ('sem_fpn', 'small'): 53, ('sem_fpn', 'base'): 92}


def arch_of(config: str) -> str:
    return next(a for a in ARCH if f'dat-{a}_' in config)


def test_all_configs_found():
    assert len(CONFIGS) == 6, CONFIGS


@pytest.mark.parametrize('config', CONFIGS)
def test_recipe(config):
    cfg = Config.fromfile(REPO / config)
    arch = arch_of(config)
    dims, drop_path = ARCH[arch]
    assert cfg.default_scope == 'mmseg'
    assert 'dat.adapters.mmseg' in cfg.custom_imports.imports
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.arch) == ('DAT', arch)
    assert backbone.out_indices == (0, 1, 2, 3)
    assert backbone.drop_path_rate == drop_path
    assert backbone.init_cfg.type == 'Pretrained' and backbone.init_cfg.prefix == 'backbone.'
    assert '_delete_' not in backbone  # consumed by the merge: no Swin/ResNet keys left
    assert set(backbone) <= {'type', 'arch', 'img_size', 'window_size', 'drop_path_rate',
                             'out_indices', 'attn_impl', 'init_cfg'}
    assert backbone.attn_impl == 'auto'
    assert cfg.model.decode_head.num_classes == 150
    if config.startswith('configs/upernet'):
        assert cfg.model.decode_head.type == 'UPerHead'
        assert cfg.model.decode_head.in_channels == dims
        aux = cfg.model.auxiliary_head
        assert (aux.type, aux.in_index, aux.in_channels) == ('FCNHead', 2, dims[2])
        assert aux.num_classes == 150 and aux.loss_decode.loss_weight == 0.4
        iters = 160000
    else:
        assert cfg.model.neck.type == 'FPN' and cfg.model.neck.in_channels == dims
        assert cfg.model.decode_head.type == 'FPNHead'
        assert cfg.model.get('auxiliary_head') is None
        iters = 80000
    assert f'-{iters // 1000}k_' in config and '8xb2' in config
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.model.data_preprocessor.size == (512, 512)
    # AdamW 6e-5, wd 0.01, AMP; 1500 linear warm-up iterations, then poly with power 1.
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999),
                                               weight_decay=0.01)
    warmup, poly = cfg.param_scheduler
    assert (warmup.type, warmup.begin, warmup.end) == ('LinearLR', 0, 1500)
    assert (poly.type, poly.power, poly.begin, poly.end) == ('PolyLR', 1.0, 1500, iters)
    assert cfg.train_cfg.max_iters == iters
    # Single-scale test by default; multi-scale flip test through --tta.
    assert cfg.test_dataloader.dataset.pipeline[1].type == 'Resize'
    assert cfg.tta_model.type == 'SegTTAModel'
    scales, flips = cfg.tta_pipeline[1].transforms[:2]
    assert [t.scale_factor for t in scales] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert [t.prob for t in flips] == [0., 1.]
    assert cfg.val_evaluator.type == cfg.test_evaluator.type == 'CheckedIoUMetric'


def build(config: str):
    from mmseg.apis import init_model
    cfg = Config.fromfile(REPO / config)
    cfg.model.backbone.init_cfg = None
    return cfg, init_model(cfg, device='cpu')


def check_decay(cfg, model):
    """No weight decay on norms and position tables; 0.01 elsewhere."""
    optim_cfg = cfg.optim_wrapper.copy()
    optim_cfg.type = 'OptimWrapper'  # AMP needs CUDA
    optimizer = build_optim_wrapper(model, optim_cfg).optimizer
    decay = {id(p): g['weight_decay'] for g in optimizer.param_groups for p in g['params']}
    norms = {f'{m}.{n}' for m, mod in model.named_modules()
             if isinstance(mod, (torch.nn.LayerNorm, torch.nn.modules.batchnorm._BatchNorm))
             for n, _ in mod.named_parameters(recurse=False)}
    tables = 0
    for name, param in model.named_parameters():
        no_decay = name in norms or name.endswith(('rpe_table', 'relative_position_bias_table'))
        tables += name.endswith(('rpe_table', 'relative_position_bias_table'))
        assert decay[id(param)] == (0. if no_decay else 0.01), name
    assert tables > 0 and len(norms) > 0


def infer(model, img, mode, crop=None, stride=None):
    from mmseg.apis import inference_model
    model.test_cfg = ConfigDict(mode=mode, crop_size=crop, stride=stride) \
        if mode == 'slide' else ConfigDict(mode='whole')
    result = inference_model(model, img)
    logits = result.seg_logits.data
    pred = result.pred_sem_seg.data
    assert logits.shape == (150, *img.shape[:2])
    assert pred.shape == (1, *img.shape[:2])
    assert torch.isfinite(logits).all()
    assert torch.equal(pred[0], logits.argmax(0))
    return logits


@pytest.mark.parametrize('config', CONFIGS)
def test_build_params_and_inference(config):
    cfg, model = build(config)
    arch = arch_of(config)
    folder = config.split('/')[1]
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert params == pytest.approx(PAPER_PARAMS[folder, arch], abs=1.0)
    check_decay(cfg, model)

    rng = np.random.default_rng(0)
    square = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    whole = infer(model, square, 'whole')
    # One 512x512 window covers the image: slide gives the whole-image logits.
    slide = infer(model, square, 'slide', (512, 512), (341, 341))
    torch.testing.assert_close(slide, whole, rtol=1e-4, atol=1e-4)
    odd = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
    whole = infer(model, odd, 'whole')
    slide = infer(model, odd, 'slide', (512, 512), (341, 341))  # two crops of 512x683
    assert not torch.allclose(slide, whole)
