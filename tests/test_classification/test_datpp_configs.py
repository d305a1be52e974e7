"""The DAT++ ImageNet-1k configs: the release's recipe, the parameter count of each model, a
training step, and weight decay as the release's optimizer.py sets it."""
from argparse import Namespace
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {
    # name: (arch, drop path, lr, weight decay, warm-up, epochs, total batch, params)
    'datpp-tiny_8xb128-amp_in1k': ('tiny', 0.2, 5e-4 * 2, 0.05, 20, 300, 1024, 23_962_876),
    'datpp-small_8xb128-amp_in1k': ('small', 0.4, 5e-4 * 2, 0.05, 20, 300, 1024, 53_127_366),
    'datpp-base_8xb64-amp_in1k': ('base', 0.7, 5e-4, 0.05, 20, 300, 512, 93_690_640),
    'datpp-base_8xb24-amp_in1k-384px': ('base', 0.6, 2e-5 * 192 / 512, 1e-8, 0, 30, 192,
                                        93_690_640),
}


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_recipe(name):
    arch, drop_path, lr, wd, warmup, epochs, total_batch, _ = CONFIGS[name]
    cfg = Config.fromfile(REPO / f'configs/datpp/{name}.py')
    backbone = cfg.model.backbone
    # every model keeps the position tables of 224 px, the 384 px one included
    assert (backbone.type, backbone.arch, backbone.img_size, backbone.drop_path_rate) == \
        ('DATPlusPlus', arch, 224, drop_path)
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.betas, optimizer.eps) == ('AdamW', (0.9, 0.999), 1e-8)
    assert optimizer.weight_decay == wd and optimizer.lr == pytest.approx(lr)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=5.0)
    assert cfg.train_cfg.max_epochs == epochs
    assert 8 * cfg.train_dataloader.batch_size == total_batch == cfg.auto_scale_lr.base_batch_size

    per_512 = 512 / total_batch
    *warmups, cosine = cfg.param_scheduler
    assert cosine.type == 'CosineAnnealingLR' and (cosine.begin, cosine.end) == (warmup, epochs)
    if warmup:
        assert warmups[0].type == 'LinearLR' and warmups[0].end == warmup
        assert warmups[0].start_factor * lr * per_512 == pytest.approx(5e-7)
        assert cosine.eta_min * per_512 == pytest.approx(5e-6)
    else:
        assert not warmups and cosine.eta_min * per_512 == pytest.approx(2e-7)

    test = [t.type for t in cfg.test_dataloader.dataset.pipeline]
    train = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    if '384' in name:
        assert train['RandomResizedCrop'].scale == 384
        assert test == ['LoadImageFromFile', 'Resize', 'PackInputs']
        assert cfg.test_dataloader.dataset.pipeline[1].scale == (384, 384)
    else:
        assert train['RandomResizedCrop'].scale == 224
        assert 'CenterCrop' in test


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_build_count_and_train_step(name, tmp_path, load_tool):
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample

    import dat.adapters.mmpretrain  # noqa: F401

    init_default_scope('mmpretrain')
    args = Namespace(launcher='none', cfg_options=None, work_dir=str(tmp_path), amp=False,
                     resume=None, no_validate=False, auto_scale_lr=False, no_pin_memory=False,
                     no_persistent_workers=False)
    train = load_tool('train.py')
    train.check_data = lambda cfg: None  # no ImageNet here: the data check has its own tests
    cfg = train.merge_args(Config.fromfile(REPO / f'configs/datpp/{name}.py'), args)
    model_cfg = cfg.model.copy()
    model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(model_cfg)
    assert sum(p.numel() for p in model.parameters()) == CONFIGS[name][-1]

    # weight decay as the release's optimizer.py: none on 1-d parameters and the D blocks'
    # rpe_table; the N blocks' rpb (3-d) is decayed
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    decay = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optim_wrapper.optimizer.param_groups:
        for param in group['params']:
            decay[names[id(param)]] = group['weight_decay']
    assert set(decay) == set(names.values())
    wd = cfg.optim_wrapper.optimizer.weight_decay
    for key, value in decay.items():
        param = model.get_parameter(key)
        expected = 0.0 if param.ndim == 1 or key.endswith('rpe_table') else wd
        assert value == expected, key
    assert decay['backbone.stages.0.blocks.0.attn.rpb'] == wd

    torch.manual_seed(0)
    data = dict(inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
                        for _ in range(2)],
                data_samples=[DataSample().set_gt_label(label) for label in (3, 997)])
    before = model.head.fc.weight.detach().clone()
    model.train()
    losses = model.train_step(data, optim_wrapper)
    assert torch.isfinite(losses['loss'])
    assert not torch.equal(before, model.head.fc.weight)
