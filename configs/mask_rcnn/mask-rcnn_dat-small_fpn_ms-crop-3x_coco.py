_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/det/coco_instance_ms-crop.py',
    '../_base_/det/schedule_adamw_3x.py',
    '../_base_/det/default_runtime.py',
    '../_base_/models/dat-small.py',
]
# The backbone starts from an ImageNet checkpoint converted with
# tools/model_converters/dat2mmpretrain.py (see this folder's README).
model = dict(
    backbone=dict(_base_.backbone, out_indices=(0, 1, 2, 3),
                  init_cfg=dict(type='Pretrained', checkpoint='checkpoints/dat-small_in1k.pth',
                                prefix='backbone.')),
    neck=dict(in_channels=[96, 192, 384, 768]))
