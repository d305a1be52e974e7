_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/det/schedule_adamw_1x.py',
    '../_base_/det/default_runtime.py',
    '../_base_/models/dat-small.py',
]
# The backbone starts from an ImageNet checkpoint converted with
# tools/model_converters/dat2mmpretrain.py (see this folder's README).
# Stages 1-3 (strides 8-32) feed the FPN, as in mmdet's Swin RetinaNet: an output of
# stage 0 would be unused, and its norm would get no gradient (which DDP rejects).
model = dict(
    backbone=dict(_base_.backbone, out_indices=(1, 2, 3),
                  init_cfg=dict(type='Pretrained', checkpoint='checkpoints/dat-small_in1k.pth',
                                prefix='backbone.')),
    neck=dict(in_channels=[192, 384, 768], start_level=0))
