"""Scaled-down DAT and DAT++ architectures, and configs of models built on them, that tests
in several folders share (tests/ is on sys.path, as the folder of tests/conftest.py).

A test that needs another block pattern changes one of these, e.g.
``dict(DAT_ARCH, block_types=['L', 'S', 'DD', 'LD'])``.
"""

#: A DAT with every block kind (L, S, D; D in stages 2-3) and the real strides (4 .. 32).
DAT_ARCH = dict(embed_dims=[16, 32, 64, 64], depths=[1, 1, 2, 2], num_heads=[1, 2, 4, 4],
                groups=[-1, -1, 2, 2], block_types=['L', 'S', 'LD', 'SD'])
#: The same with two blocks in every stage.
DAT_ARCH_2X = dict(DAT_ARCH, depths=[2, 2, 2, 2], block_types=['LS', 'LS', 'LD', 'SD'])
#: The block pattern of the released DATs: L and S blocks, then L and D.
DAT_ARCH_AS_RELEASED = dict(DAT_ARCH, block_types=['L', 'S', 'LD', 'LD'])
#: A DAT++ with both block kinds (N, D); its inputs need at least 33 px.
DATPP_ARCH = dict(DAT_ARCH, groups=[1, 1, 2, 2], block_types=['N', 'D', 'ND', 'DD'])
#: One block per stage, every block kind of the family once (the export tests).
DAT_ARCH_1X = dict(DAT_ARCH, depths=[1, 1, 1, 1], block_types=['L', 'S', 'D', 'S'])
DATPP_ARCH_1X = dict(DATPP_ARCH, depths=[1, 1, 1, 1], block_types=['N', 'D', 'N', 'D'])


def as_code(settings: dict) -> str:
    """``dict(key=value, ...)``: a dict written into a config's text (without braces, which
    ``str.format`` would read)."""
    return 'dict(' + ', '.join(f'{key}={value!r}' for key, value in settings.items()) + ')'


#: A 4-stage DAT with L, S and D blocks, small enough to train a few iterations on the CPU
#: (``.format(repo=..., data=...)``: the checkout and a make_shapes_dataset.py folder).
TINY_TRAIN_CONFIG = f"""
_base_ = ['{{repo}}/configs/dat/dat-mini_1xb32_shapes.py']
model = dict(
    backbone=dict(
        arch={as_code(dict(DAT_ARCH, depths=[2, 2, 2, 2], block_types=['LS', 'LS', 'LD', 'LD']))},
        img_size=32, window_size=[4, 4, 2, 1], drop_path_rate=0.0),
    head=dict(in_channels=64))
pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root='{{data}}', pipeline=pipeline))
val_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root='{{data}}', pipeline=pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=1, val_interval=1)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=-1))
"""

#: A small DAT classifier (8 classes) for the inference tools.
TINY_CLASSIFIER_CONFIG = f"""
default_scope = 'mmpretrain'
custom_imports = dict(imports=['dat.adapters.mmpretrain'], allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    backbone=dict(type='DAT', img_size=64, window_size=[4, 4, 4, 2], out_indices=(3, ),
                  arch={as_code(DAT_ARCH_AS_RELEASED)}),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=8, in_channels=64))
data_preprocessor = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                         to_rgb=True)
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='ResizeEdge', scale=64, edge='short'),
                 dict(type='CenterCrop', crop_size=64), dict(type='PackInputs')]
test_dataloader = dict(dataset=dict(type='CustomDataset', pipeline=test_pipeline))
"""
