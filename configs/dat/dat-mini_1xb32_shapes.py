# Quick start: a scaled-down DAT, with local (L), shifted-window (S) and deformable (D)
# blocks, trained on the generated texture dataset (6 classes, 32x32 px):
#     python tools/dataset_converters/make_shapes_dataset.py data/shapes
#     python tools/train.py configs/dat/dat-mini_1xb32_shapes.py
# or just `bash tools/quickstart.sh`. It takes a few minutes on two CPU cores.
_base_ = ['../_base_/default_runtime.py']

classes = ('stripes_0', 'stripes_45', 'stripes_90', 'stripes_135', 'checkerboard', 'dots')
data_root = 'data/shapes'

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='DAT',
        arch=dict(
            embed_dims=[32, 64, 128, 128],
            depths=[2, 2, 2, 2],
            num_heads=[1, 2, 4, 4],
            groups=[-1, -1, 2, 2],
            block_types=['LS', 'LS', 'LD', 'LD']),
        img_size=32,
        window_size=[4, 4, 2, 1],  # stage maps 8, 4, 2, 1
        drop_path_rate=0.1,
        out_indices=(3, ),
        attn_impl='auto'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=len(classes),
        in_channels=128,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, )),
)

data_preprocessor = dict(
    num_classes=len(classes),
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),  # errors name the file (docs/faults.md)
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.6, 1.0),
         backend='pillow', interpolation='bicubic'),
    # no flips: a flip turns 45 degree stripes into 135 degree ones
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),  # tools/test.py checks it too (docs/faults.md)
    dict(type='ResizeEdge', scale=32, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=32),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=32,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(type='ImageNet', data_root=data_root, split='train',
                 metainfo=dict(classes=classes), pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(type='ImageNet', data_root=data_root, split='val',
                 metainfo=dict(classes=classes), pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# The in1k recipe's optimizer and schedule, shortened to 30 epochs (2 of warm-up).
max_epochs = 30
optim_wrapper = dict(
    constructor='NoDecayKeywordsConstructor',  # no decay on the position tables either
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0),
    clip_grad=dict(max_norm=5.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, end=2, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=2, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='AtomicCheckpointHook', interval=max_epochs, max_keep_ckpts=1))
randomness = dict(seed=0)
