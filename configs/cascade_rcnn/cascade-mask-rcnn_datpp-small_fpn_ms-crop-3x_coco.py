# DAT-S++ cascade Mask R-CNN, 3x with the multi-scale + crop augmentation:
# the authors' configs/dat/cmrcn_small_3x_4n_dp05_lr4.py (LeapLabTHU/DAT-Detection, mmdet 2.26).
# They train on 4 nodes x 8 GPUs x 2 images (64 images) with lr 4e-4;
# here 8 GPUs x 2 images with the lr scaled linearly (--auto-scale-lr from 16).
_base_ = [
    '../_base_/det/cascade-mask-rcnn_fpn_4conv1fc-giou.py',
    '../_base_/det/coco_instance_ms-crop.py',
    '../_base_/det/schedule_adamw_3x.py',
    '../_base_/det/default_runtime.py',
    '../_base_/models/datpp-small.py',
]
# The backbone starts from an ImageNet checkpoint converted with
# tools/model_converters/datpp2mmpretrain.py (see configs/datpp/README.md).
model = dict(
    backbone=dict(_base_.backbone, drop_path_rate=0.5, out_indices=(0, 1, 2, 3),
                  init_cfg=dict(type='Pretrained',
                                checkpoint='checkpoints/datpp-small_in1k_224.pth',
                                prefix='backbone.')),
    neck=dict(in_channels=[96, 192, 384, 768]))
# trained in fp32 (the release's OptimizerHook), not with mixed precision
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=_base_.optim_wrapper.optimizer,
                     paramwise_cfg=_base_.optim_wrapper.paramwise_cfg)
