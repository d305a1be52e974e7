# ImageNet-1k at 384 px for the DAT-B++ fine-tune: training as in imagenet_bs24_dat_384.py;
# testing resizes the whole image to 384 x 384 without a crop (TEST.CROP False in the
# DAT++ release's configs/dat_base_384.yaml; data/build.py then resizes to (384, 384)).
_base_ = ['./imagenet_bs24_dat_384.py']

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(384, 384), backend='pillow', interpolation='bicubic'),
    dict(type='PackInputs'),
]

val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
