_base_ = ['../_base_/det/cascade-mask-rcnn_dat_fpn.py', '../_base_/det/coco_instance.py',
          '../_base_/det/schedule_adamw_amp-1x.py']
