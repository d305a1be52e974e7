_base_ = ['../_base_/det/cascade-mask-rcnn_dat_fpn.py', '../_base_/det/coco_instance_ms-crop.py',
          '../_base_/det/schedule_adamw_amp-3x.py']
model = dict(backbone=dict(arch='base', drop_path_rate=0.5,
                           init_cfg=dict(checkpoint='checkpoints/dat-base_in1k.pth')),
             neck=dict(in_channels=[128, 256, 512, 1024]))
