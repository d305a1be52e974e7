_base_ = ['../_base_/det/retinanet_dat_fpn.py', '../_base_/det/coco_detection.py',
          '../_base_/det/schedule_adamw_amp-1x.py']
model = dict(backbone=dict(arch='small', drop_path_rate=0.3,
                           init_cfg=dict(checkpoint='checkpoints/dat-small_in1k.pth')))
