# DAT-T++ UperNet on ADE20K: the authors' configs/dat/upn_tiny_160k_dp03_lr6.py
# (LeapLabTHU/DAT-Segmentation, mmseg 0.29): 160k iterations at 8 GPUs x 2 images.
_base_ = [
    'mmseg::_base_/models/upernet_swin.py',
    '../_base_/datasets/ade20k_dat.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/seg_adamw_datpp_160k.py',
    '../_base_/models/datpp-tiny.py',
]
custom_imports = dict(imports=['dat.adapters.mmseg'], allow_failed_imports=False)

crop_size = (512, 512)
# ImageNet weights converted with tools/model_converters/datpp2mmpretrain.py
checkpoint_file = 'checkpoints/datpp-tiny_in1k_224.pth'
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _base_.backbone,
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file, prefix='backbone.')),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),
    auxiliary_head=dict(in_channels=256, num_classes=150))

train_dataloader = dict(batch_size=2)
