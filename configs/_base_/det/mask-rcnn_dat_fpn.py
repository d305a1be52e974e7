# Mask R-CNN with FPN (mmdet's R-50 model) on DAT-T: the backbone replaces the ResNet and
# starts from the ImageNet checkpoint converted with tools/model_converters/dat2mmpretrain.py
# (see configs/mask_rcnn/README.md). The configs in configs/mask_rcnn add the data and the
# schedule; those of DAT-S set its arch, drop path and checkpoint.
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py', './default_runtime.py']

model = dict(
    backbone=dict(
        _delete_=True, type='DAT', arch='tiny', img_size=224, window_size=7, drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3), attn_impl='auto',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/dat-tiny_in1k.pth',
                      prefix='backbone.')),
    neck=dict(in_channels=[96, 192, 384, 768]))
