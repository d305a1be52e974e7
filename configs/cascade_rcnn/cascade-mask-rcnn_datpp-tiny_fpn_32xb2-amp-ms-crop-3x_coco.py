# DAT-T++ cascade Mask R-CNN, 3x with the multi-scale + crop augmentation: the authors'
# configs/dat/cmrcn_tiny_3x_4n_dp01_lr4.py (LeapLabTHU/DAT-Detection, mmdet 2.26).
_base_ = ['../_base_/det/cascade-mask-rcnn_datpp_fpn.py', '../_base_/det/coco_instance_ms-crop.py',
          '../_base_/det/schedule_adamw_datpp_amp-3x.py']
model = dict(backbone=dict(drop_path_rate=0.1))
