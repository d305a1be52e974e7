# Cascade Mask R-CNN with the 4conv1fc GIoU box heads (cascade-mask-rcnn_fpn_4conv1fc-giou.py)
# on DAT-T, initialised as in mask-rcnn_dat_fpn.py.
_base_ = ['./cascade-mask-rcnn_fpn_4conv1fc-giou.py', './default_runtime.py']

model = dict(
    backbone=dict(
        _delete_=True, type='DAT', arch='tiny', img_size=224, window_size=7,
        drop_path_rate=0.2, out_indices=(0, 1, 2, 3), attn_impl='auto',
        init_cfg=dict(type='Pretrained', prefix='backbone.',
                      checkpoint='checkpoints/dat-tiny_in1k.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))
