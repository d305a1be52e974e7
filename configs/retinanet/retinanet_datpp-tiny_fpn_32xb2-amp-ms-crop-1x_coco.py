# DAT-T++ RetinaNet, 1x with the multi-scale + crop augmentation: the authors'
# configs/dat/rtn_tiny_1x_4n_dp00_lr2.py (LeapLabTHU/DAT-Detection, mmdet 2.26).
_base_ = ['../_base_/det/retinanet_datpp_fpn.py', '../_base_/det/coco_detection_ms-crop.py',
          '../_base_/det/schedule_adamw_datpp_amp-1x.py']
model = dict(backbone=dict(drop_path_rate=0.0))
optim_wrapper = dict(optimizer=dict(lr=2e-4))  # the release's RetinaNet lr (64 images)
