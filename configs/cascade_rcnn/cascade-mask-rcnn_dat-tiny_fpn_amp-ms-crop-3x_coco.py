_base_ = ['../_base_/det/cascade-mask-rcnn_dat_fpn.py', '../_base_/det/coco_instance_ms-crop.py',
          '../_base_/det/schedule_adamw_amp-3x.py']
