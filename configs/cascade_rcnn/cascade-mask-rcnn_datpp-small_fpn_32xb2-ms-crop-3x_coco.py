# DAT-S++ cascade Mask R-CNN, 3x with the multi-scale + crop augmentation: the authors'
# configs/dat/cmrcn_small_3x_4n_dp05_lr4.py (LeapLabTHU/DAT-Detection, mmdet 2.26), trained in
# fp32 as there (their OptimizerHook has no fp16).
_base_ = ['../_base_/det/cascade-mask-rcnn_datpp_fpn.py', '../_base_/det/coco_instance_ms-crop.py',
          '../_base_/det/schedule_adamw_datpp_3x.py']
model = dict(backbone=dict(arch='small', drop_path_rate=0.5,
                           init_cfg=dict(checkpoint='checkpoints/datpp-small_in1k_224.pth')),
             neck=dict(in_channels=[96, 192, 384, 768]))
