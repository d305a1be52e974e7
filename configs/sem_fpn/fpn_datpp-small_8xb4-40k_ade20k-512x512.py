# DAT-S++ Semantic FPN on ADE20K: the authors' configs/dat/fpn_small_80k_dp04_lr2.py
# (LeapLabTHU/DAT-Segmentation, mmseg 0.29), which they call 80k: 40k iterations
# at 8 GPUs x 4 images (see seg_adamw_datpp_fpn_40k.py). No auxiliary head.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    '../_base_/datasets/ade20k_dat.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/seg_adamw_datpp_fpn_40k.py',
    '../_base_/models/datpp-small.py',
]
custom_imports = dict(imports=['dat.adapters.mmseg'], allow_failed_imports=False)

crop_size = (512, 512)
# ImageNet weights converted with tools/model_converters/datpp2mmpretrain.py
checkpoint_file = 'checkpoints/datpp-small_in1k_224.pth'
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _base_.backbone,
        drop_path_rate=0.4,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file, prefix='backbone.')),
    neck=dict(in_channels=[96, 192, 384, 768]),
    decode_head=dict(num_classes=150))

train_dataloader = dict(batch_size=4)
