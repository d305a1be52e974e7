_base_ = [
    '../_base_/det/cascade-mask-rcnn_fpn_4conv1fc-giou.py',
    'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/det/schedule_adamw_1x.py',
    '../_base_/det/default_runtime.py',
    '../_base_/models/dat-tiny.py',
]
# The backbone starts from an ImageNet checkpoint converted with
# tools/model_converters/dat2mmpretrain.py (see this folder's README).
model = dict(
    backbone=dict(_base_.backbone, out_indices=(0, 1, 2, 3),
                  init_cfg=dict(type='Pretrained', checkpoint='checkpoints/dat-tiny_in1k.pth',
                                prefix='backbone.')),
    neck=dict(in_channels=[96, 192, 384, 768]))
