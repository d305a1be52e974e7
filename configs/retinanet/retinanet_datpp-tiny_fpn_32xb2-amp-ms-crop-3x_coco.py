# DAT-T++ RetinaNet, 3x with the multi-scale + crop augmentation: the authors'
# configs/dat/rtn_tiny_3x_4n_dp02_lr2.py (LeapLabTHU/DAT-Detection, mmdet 2.26).
_base_ = ['../_base_/det/retinanet_datpp_fpn.py', '../_base_/det/coco_detection_ms-crop.py',
          '../_base_/det/schedule_adamw_datpp_amp-3x.py']
model = dict(backbone=dict(drop_path_rate=0.2))
optim_wrapper = dict(optimizer=dict(lr=2e-4))  # the release's RetinaNet lr (64 images)
