# RetinaNet with FPN (mmdet's R-50 model) on DAT-T++, initialised as in
# mask-rcnn_datpp_fpn.py. Stages 1-3 feed the FPN, as in the release (whose stage-0 output
# has no norm).
_base_ = ['mmdet::_base_/models/retinanet_r50_fpn.py', './default_runtime.py']

model = dict(
    backbone=dict(_delete_=True, type='DATPlusPlus', arch='tiny', img_size=224,
                  drop_path_rate=0.0, out_indices=(1, 2, 3), attn_impl='auto',
                  init_cfg=dict(type='Pretrained', prefix='backbone.',
                                checkpoint='checkpoints/datpp-tiny_in1k_224.pth')),
    neck=dict(in_channels=[128, 256, 512], start_level=0))
