"""The ImageNet-1k configs: the 2022 recipe's numbers, a training step of each full model,
and no weight decay on norms, biases and position tables."""
from argparse import Namespace
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {
    # name: (arch, img_size, window, drop_path, lr, weight decay, warm-up epochs, epochs,
    #        gradient clipping: TRAIN.CLIP_GRAD of the 2022 configs, 5.0 by default and
    #        1.0 in dat_base.yaml)
    'dat-tiny_8xb128-amp_in1k': ('tiny', 224, 7, 0.2, 5e-4 * 2, 0.05, 20, 300, 5.0),
    'dat-small_8xb128-amp_in1k': ('small', 224, 7, 0.3, 5e-4 * 2, 0.05, 20, 300, 5.0),
    'dat-base_8xb128-amp_in1k': ('base', 224, 7, 0.5, 4e-4 * 2, 0.05, 50, 300, 1.0),
    'dat-base_8xb24-amp_in1k-384px': ('base', 384, 12, 0.5, 2e-6 * 192 / 512, 1e-8, 0, 30, 5.0),
}


def cpu_config(name, tmp_path, load_tool):
    """The config as tools/train.py turns it into on this (CPU) machine."""
    args = Namespace(launcher='none', cfg_options=None, work_dir=str(tmp_path), amp=False,
                     resume=None, no_validate=False, auto_scale_lr=False, no_pin_memory=False,
                     no_persistent_workers=False)
    train = load_tool('train.py')
    train.check_data = lambda cfg: None  # no ImageNet here: the data check has its own tests
    return train.merge_args(Config.fromfile(REPO / f'configs/dat/{name}.py'), args)


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_recipe(name):
    arch, img_size, window, drop_path, lr, wd, warmup, epochs, clip = CONFIGS[name]
    cfg = Config.fromfile(REPO / f'configs/dat/{name}.py')
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.arch, backbone.img_size, backbone.window_size,
            backbone.drop_path_rate) == ('DAT', arch, img_size, window, drop_path)
    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.type == 'AdamW' and optimizer.betas == (0.9, 0.999)
    assert (optimizer.eps, optimizer.weight_decay) == (1e-8, wd)
    assert optimizer.lr == pytest.approx(lr)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=clip)
    assert cfg.train_cfg.max_epochs == epochs

    total_batch = 8 * cfg.train_dataloader.batch_size
    assert total_batch == (192 if '384' in name else 1024)
    assert cfg.auto_scale_lr.base_batch_size == total_batch
    per_512 = 512 / total_batch
    *warmups, cosine = cfg.param_scheduler
    assert cosine.type == 'CosineAnnealingLR' and cosine.convert_to_iter_based
    assert (cosine.begin, cosine.end) == (warmup, epochs)
    if warmup:
        assert warmups[0].type == 'LinearLR' and warmups[0].end == warmup
        assert warmups[0].start_factor * lr * per_512 == pytest.approx(5e-7)
        assert cosine.eta_min * per_512 == pytest.approx(5e-6)
    else:
        assert not warmups and cosine.eta_min * per_512 == pytest.approx(1e-7)

    augments = cfg.model.train_cfg.augments
    assert [(a.type, a.alpha) for a in augments] == [('Mixup', 0.8), ('CutMix', 1.0)]
    assert cfg.model.head.loss.label_smooth_val == 0.1
    train = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    assert train['RandomResizedCrop'].scale == img_size
    assert train['RandomResizedCrop'].interpolation == 'bicubic'
    assert (train['RandAugment'].magnitude_level, train['RandAugment'].magnitude_std,
            train['RandAugment'].policies) == (9, 0.5, 'timm_increasing')
    assert (train['RandomErasing'].erase_prob, train['RandomErasing'].mode) == (0.25, 'rand')
    # the 2022 test transform: both sides to int(256 / 224 * S) (aspect ratio not kept),
    # bicubic, then the centre S x S (test_in1k_test_pipeline.py runs it on photographs)
    test = cfg.test_dataloader.dataset.pipeline
    assert [t.type for t in test] == ['LoadImageFromFile', 'Resize', 'CenterCrop', 'PackInputs']
    resize = int(256 / 224 * img_size)
    assert test[1] == dict(type='Resize', scale=(resize, resize), keep_ratio=False,
                           backend='pillow', interpolation='bicubic')
    assert test[2].crop_size == img_size
    assert cfg.val_dataloader.dataset.pipeline == test


NO_DECAY = ('norm', 'relative_position_bias_table', 'rpe_table')


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_build_and_train_step(name, tmp_path, load_tool):
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample

    import dat.adapters.mmpretrain  # noqa: F401

    init_default_scope('mmpretrain')
    cfg = cpu_config(name, tmp_path, load_tool)
    weight_decay = cfg.optim_wrapper.optimizer.weight_decay
    model_cfg = cfg.model.copy()
    model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(model_cfg)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert type(optim_wrapper).__name__ == 'OptimWrapper'  # AMP needs CUDA

    names = {id(p): n for n, p in model.named_parameters()}
    seen = set()
    for group in optim_wrapper.optimizer.param_groups:
        for param in group['params']:
            name_ = names[id(param)]
            no_decay = (param.ndim == 1 or name_.endswith('.bias')
                        or any(k in name_ for k in NO_DECAY))
            assert group['weight_decay'] == (0.0 if no_decay else weight_decay), name_
            seen.add(name_)
    assert seen == set(names.values())
    for key in ('.norm1.weight', '.attn.qkv.bias', '.relative_position_bias_table',
                '.rpe_table', 'offset.norm.weight'):
        assert any(key in n for n in seen), key

    # one step on two 64 px images (DAT runs at any size >= 32)
    torch.manual_seed(0)
    data = dict(inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
                        for _ in range(2)],
                data_samples=[DataSample().set_gt_label(label) for label in (3, 997)])
    before = model.head.fc.weight.detach().clone()
    model.train()
    losses = model.train_step(data, optim_wrapper)
    assert torch.isfinite(losses['loss'])
    assert not torch.equal(before, model.head.fc.weight)
