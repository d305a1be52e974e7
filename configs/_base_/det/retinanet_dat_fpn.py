# RetinaNet with FPN (mmdet's R-50 model) on DAT-T, initialised as in mask-rcnn_dat_fpn.py.
# Stages 1-3 (strides 8-32) feed the FPN, as in mmdet's Swin RetinaNet: an output of stage 0
# would be unused, and its norm would get no gradient (which DDP rejects).
_base_ = ['mmdet::_base_/models/retinanet_r50_fpn.py', './default_runtime.py']

model = dict(
    backbone=dict(
        _delete_=True, type='DAT', arch='tiny', img_size=224, window_size=7, drop_path_rate=0.2,
        out_indices=(1, 2, 3), attn_impl='auto',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/dat-tiny_in1k.pth',
                      prefix='backbone.')),
    neck=dict(in_channels=[192, 384, 768], start_level=0))
