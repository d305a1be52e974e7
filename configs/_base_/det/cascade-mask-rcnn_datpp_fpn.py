# Cascade Mask R-CNN with the 4conv1fc GIoU box heads (cascade-mask-rcnn_fpn_4conv1fc-giou.py)
# on DAT-T++, initialised as in mask-rcnn_datpp_fpn.py (with mmdet's FPN, as the release).
# Gradient checkpointing per block (with_cp) is on, as use_checkpoint=True in the release's
# configs/_base_/models/cascade_mask_rcnn_dat_fpn.py (LeapLabTHU/DAT-Detection@4d4023d; it
# checkpoints each stage, the same numbers): the authors trained on 40 GB GPUs. Not measured to be
# unnecessary on a GPU with the faster neighbourhood attention; turn it off with
# --cfg-options model.backbone.with_cp=False where memory allows.
_base_ = ['./cascade-mask-rcnn_fpn_4conv1fc-giou.py', './default_runtime.py']

model = dict(
    backbone=dict(
        _delete_=True, type='DATPlusPlus', arch='tiny', img_size=224, drop_path_rate=0.0,
        out_indices=(0, 1, 2, 3), with_cp=True, attn_impl='auto',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/datpp-tiny_in1k_224.pth',
                      prefix='backbone.')),
    neck=dict(in_channels=[64, 128, 256, 512]))
