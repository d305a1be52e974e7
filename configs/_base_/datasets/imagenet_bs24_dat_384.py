# ImageNet-1k at 384 px for the DAT-B-384 fine-tune: the 224 px augmentation of
# imagenet_bs128_dat_224.py with 384 px crops; test resizes the whole image to 438x438
# (= int(256 / 224 * 384), bicubic, the aspect ratio is NOT kept) and centre-crops 384,
# as the 2022 release's data/build.py does (see imagenet_bs128_dat_224.py).
_base_ = ['./imagenet_bs128_dat_224.py']

train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=384, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=[103.53, 116.28, 123.675],
        fill_std=[57.375, 57.12, 58.395]),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(438, 438), keep_ratio=False, backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=384),
    dict(type='PackInputs'),
]

train_dataloader = dict(batch_size=24, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=24, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
