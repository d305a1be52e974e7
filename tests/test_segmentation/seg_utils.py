"""Helpers of the segmentation tests: a tiny ADE20K-layout dataset and a
scaled-down UperNet config that inherits the released DAT-T recipe."""
from pathlib import Path

import numpy as np
from mini_configs import DAT_ARCH_AS_RELEASED as MINI_ARCH
from mini_configs import DATPP_ARCH
from PIL import Image


def make_ade_layout(root: Path, num_train: int = 4, num_val: int = 2, seed: int = 0,
                    sizes=((64, 80), (75, 100))) -> Path:
    """ADEChallengeData2016-style folders: images/{training,validation}/*.jpg and
    annotations/{training,validation}/*.png. Label maps use ADE20K's values: 0 is
    "other" (ignored after reduce_zero_label), 1..150 the classes. Each image is split
    into a few flat regions whose colour depends on the class, so it is learnable."""
    rng = np.random.default_rng(seed)
    for split, count in (('training', num_train), ('validation', num_val)):
        (root / 'images' / split).mkdir(parents=True, exist_ok=True)
        (root / 'annotations' / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            h, w = sizes[i % len(sizes)]
            label = np.zeros((h, w), np.uint8)
            label[:, : w // 3] = 1
            label[: h // 2, w // 3:] = 3
            label[h // 2:, w // 3:] = 150
            label[:4, :4] = 0  # a corner of "other"
            colours = {0: 0, 1: 60, 3: 140, 150: 230}
            img = np.vectorize(colours.get)(label).astype(np.uint8)
            img = np.stack([img, 255 - img, img // 2], -1)
            img = np.clip(img + rng.integers(0, 20, img.shape), 0, 255).astype(np.uint8)
            name = f'ADE_{split[:5]}_{i:08d}'
            Image.fromarray(img).save(root / 'images' / split / f'{name}.jpg')
            Image.fromarray(label).save(root / 'annotations' / split / f'{name}.png')
    return root


# DAT++ with both block kinds, small sizes (min input 33 px).
MINI_PP_BACKBONE = dict(arch=DATPP_ARCH, img_size=64)


def write_mini_config(path: Path, repo_root: Path, data_root: Path, max_iters: int = 4,
                      extra: str = '',
                      recipe: str = 'upernet_dat-tiny_8xb2-amp-160k_ade20k-512x512.py',
                      backbone: dict = None) -> Path:
    """A scaled-down UperNet: the DAT-T recipe file (or ``recipe`` in configs/upernet), with
    a mini DAT (or ``backbone``), narrow heads and 64 px crops on ``data_root`` (BN instead
    of SyncBN, which needs CUDA)."""
    base = repo_root / 'configs' / 'upernet' / recipe
    backbone = backbone or dict(arch=MINI_ARCH, img_size=64, window_size=4)
    args = ', '.join(f'{k}={v!r}' for k, v in backbone.items() if k != 'arch')
    path.write_text(f"""
_base_ = [{str(base)!r}]
norm_cfg = dict(type='BN', requires_grad=True)
data_root = {str(data_root)!r}
crop_size = (64, 64)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch=dict(_delete_=True, **{backbone['arch']!r}),
                  {args}, drop_path_rate=0.1, init_cfg=None),
    decode_head=dict(in_channels=[16, 32, 64, 64], channels=32, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=64, channels=16, norm_cfg=norm_cfg))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(128, 64), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 64), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in (0.5, 1.0, 1.5)],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations')], [dict(type='PackSegInputs')]]),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters={max_iters}, val_interval={max_iters})
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2),
    dict(type='PolyLR', power=1.0, by_epoch=False, begin=2, end={max_iters}),
]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval={max_iters}),
                     visualization=dict(draw=False))
env_cfg = dict(cudnn_benchmark=False)
{extra}
""")
    return path
