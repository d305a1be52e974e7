# DAT-S++ Mask R-CNN, 1x with the multi-scale + crop augmentation: the authors'
# configs/dat/mrcn_small_1x_4n_dp01_lr4.py (LeapLabTHU/DAT-Detection, mmdet 2.26).
_base_ = ['../_base_/det/mask-rcnn_datpp_fpn.py', '../_base_/det/coco_instance_ms-crop.py',
          '../_base_/det/schedule_adamw_datpp_amp-1x.py']
model = dict(backbone=dict(arch='small', drop_path_rate=0.1,
                           init_cfg=dict(checkpoint='checkpoints/datpp-small_in1k_224.pth')),
             neck=dict(in_channels=[96, 192, 384, 768]))
