# DAT-T++ RetinaNet, 3x with the multi-scale + crop augmentation:
# the authors' configs/dat/rtn_tiny_3x_4n_dp02_lr2.py (LeapLabTHU/DAT-Detection, mmdet 2.26).
# They train on 4 nodes x 8 GPUs x 2 images (64 images) with lr 2e-4;
# here 8 GPUs x 2 images with the lr scaled linearly (--auto-scale-lr from 16).
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    '../_base_/det/coco_detection_ms-crop.py',
    '../_base_/det/schedule_adamw_3x.py',
    '../_base_/det/default_runtime.py',
    '../_base_/models/datpp-tiny.py',
]
# The backbone starts from an ImageNet checkpoint converted with
# tools/model_converters/datpp2mmpretrain.py (see configs/datpp/README.md).
model = dict(
    backbone=dict(_base_.backbone, drop_path_rate=0.2, out_indices=(1, 2, 3),
                  init_cfg=dict(type='Pretrained',
                                checkpoint='checkpoints/datpp-tiny_in1k_224.pth',
                                prefix='backbone.')),
    # stages 1-3 feed the FPN, as in the release (its stage-0 output has no norm)
    neck=dict(in_channels=[128, 256, 512], start_level=0))
optim_wrapper = dict(optimizer=dict(lr=2e-4 * 16 / 64))
