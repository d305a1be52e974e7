_base_ = [
    'mmseg::_base_/models/upernet_swin.py',
    '../_base_/datasets/ade20k_dat.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/seg_adamw_dat_160k.py',
    '../_base_/models/dat-tiny.py',
]
custom_imports = dict(imports=['dat.adapters.mmseg'], allow_failed_imports=False)

crop_size = (512, 512)
# ImageNet weights converted with tools/model_converters/dat2mmpretrain.py
checkpoint_file = 'checkpoints/dat-tiny_in1k.pth'
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _base_.backbone,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file, prefix='backbone.')),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))

# 8 GPUs x 2 images
train_dataloader = dict(batch_size=2)
